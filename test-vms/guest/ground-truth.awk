# Turns /proc into the ground-truth task list. Inputs, told apart by FILENAME:
#   the `ls -l /proc/*/task/*/ns/` listing, then every task's status, then every task's cgroup.
# Variables: skip1, skip2 = pids to leave out (the collector and its parent, both about to exit).
# The same input may come as one stream from `tail -n +1 FILE...`, whose "==> FILE <==" headers
# name each file: tail goes on past a task that exited after the glob named it, where awk stops.
function esc(s,   out, i, c) {
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\") out = out "\\\\"
    else if (c == "\"") out = out "\\\""
    else if (c < " ") out = out sprintf("\\u%04x", ord[c])
    else out = out c
  }
  return out
}
function num(s) { return s ~ /^[0-9]+$/ ? s : "null" }
BEGIN {
  for (i = 1; i < 32; i++) ord[sprintf("%c", i)] = i
  n = 0
}
/^==> .* <==$/ { src = substr($0, 5, length($0) - 8); next }
{ file = src != "" ? src : FILENAME }
file ~ /gt\.ns$/ {
  if ($0 ~ /^\/proc\/.*\/ns\/?:$/) { split($0, p, "/"); cur = p[5]; next }
  if ($0 ~ / -> /) {
    kind = $(NF - 2); target = $NF
    sub(/^.*\[/, "", target); sub(/\].*$/, "", target)
    ns[cur, kind] = target
  }
  next
}
file ~ /\/status$/ {
  split(file, p, "/"); tid = p[5]
  if (!(tid in seen)) { seen[tid] = 1; order[n++] = tid }
  if ($1 == "Name:") { sub(/^Name:\t/, ""); comm[tid] = $0 }
  else if ($1 == "Tgid:") tgid[tid] = $2
  else if ($1 == "PPid:") ppid[tid] = $2
  else if ($1 == "Uid:") { uid[tid] = $2; euid[tid] = $3 }
  else if ($1 == "Gid:") { gid[tid] = $2; egid[tid] = $3 }
  else if ($1 == "NSpid:") { s = $2; for (i = 3; i <= NF; i++) s = s "," $i; nspid[tid] = s; nsinner[tid] = $NF }
  next
}
file ~ /\/cgroup$/ {
  split(file, p, "/"); tid = p[5]
  if ($0 ~ /^0::/) { sub(/^0::/, ""); cgroup[tid] = $0 }
  next
}
END {
  first = 1
  for (k = 0; k < n; k++) {
    t = order[k]
    if (t == skip1 || t == skip2 || tgid[t] == skip1 || ppid[t] == skip1) continue
    if (!first) printf ","
    first = 0
    printf "{\"pid\":%d,\"tgid\":%d,\"ppid\":%d,\"comm\":\"%s\",\"nspid\":%d,\"nspids\":[%s],", t, tgid[t], ppid[t], esc(comm[t]), nsinner[t], nspid[t]
    printf "\"uid\":%d,\"euid\":%d,\"gid\":%d,\"egid\":%d,\"cgroup\":\"%s\",\"ns\":{", uid[t], euid[t], gid[t], egid[t], esc(cgroup[t])
    # namespace inodes pass 2^31: print them as the digit strings they are, not through %d
    printf "\"pid\":%s,\"mnt\":%s,\"uts\":%s,\"net\":%s,\"ipc\":%s,\"cgroup\":%s,\"user\":%s,\"time\":%s}}", num(ns[t, "pid"]), num(ns[t, "mnt"]), num(ns[t, "uts"]), num(ns[t, "net"]), num(ns[t, "ipc"]), num(ns[t, "cgroup"]), num(ns[t, "user"]), num(ns[t, "time"])
  }
}
