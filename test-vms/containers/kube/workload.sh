#!/bin/sh
# Starts its own inner pid namespace: the inner shell is pid 1 there, pid 2 here.
exec unshare -p -f -m --mount-proc /bin/sh -c '
  sleep 2000000 &
  mkfifo /tmp/inner.fifo 2>/dev/null
  while :; do read -t 1 x <> /tmp/inner.fifo; done'
