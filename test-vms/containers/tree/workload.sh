#!/bin/sh
# A small process tree: this shell and three children.
for i in 1 2 3; do sleep 100000$i & done
wait
