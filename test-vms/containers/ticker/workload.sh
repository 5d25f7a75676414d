#!/bin/sh
# Counts, waking every 50 ms (a syscall at least every 100 ms), and keeps the count in a file.
mkfifo /tmp/tick.fifo 2>/dev/null
n=0
while :; do
  read -t 0.05 x <> /tmp/tick.fifo
  n=$((n + 1))
  echo "$n" > /tmp/counter
done
