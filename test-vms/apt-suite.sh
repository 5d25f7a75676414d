#!/bin/sh
# A private apt configuration for another Debian suite (e.g. trixie), so that fetch-debs.sh can
# take a package from it (APT_CONFIG=DIR/apt.conf) without touching the system's sources.
# Usage: apt-suite.sh DIR SUITE   (the index is refreshed when older than a day)
set -eu
dir=$1; suite=$2
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
dir=$(cd "$dir" && pwd)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" > "$dir/sources.list"
cat > "$dir/apt.conf" <<CONF
Dir::Etc::SourceList "$dir/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$dir/lists";
Dir::Cache "$dir/cache";
Dir::State::Status "$dir/status";
CONF
touch "$dir/status"
# (a stamp of our own: apt leaves an unchanged index file's date as it was)
if [ -z "$(find "$dir/updated" -mtime -1 2>/dev/null)" ]; then
  echo "apt-suite: updating the $suite package index" >&2
  APT_CONFIG="$dir/apt.conf" apt-get update -q >&2
  touch "$dir/updated"
fi
