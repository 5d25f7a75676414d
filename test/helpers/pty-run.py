#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal of its own, as a terminal user would (for the tests of
`vmictl exec -t`; node has no pty module).

Usage: pty-run.py ROWS COLS COMMAND [ARGS...]

The terminal starts ROWS x COLS. Once the command has put it in raw mode, each line of this
script's stdin is typed into it, except `#resize ROWS COLS`, which resizes the terminal (the
command gets SIGWINCH). What the command writes to the terminal is copied to stdout as it comes.
Exits with the command's exit status (128 + n for signal n).
"""
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))


def main():
    rows, cols, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    master, slave = os.openpty()
    set_size(slave, rows, cols)

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    child = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    lines = []
    pending = b''
    stdin_open = True
    while True:
        raw = not termios.tcgetattr(master)[3] & termios.ICANON
        watch = [master] + ([0] if stdin_open else [])
        ready, _, _ = select.select(watch, [], [], 0.1)
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                stdin_open = False
            pending += data
            *done, pending = pending.split(b'\n')
            lines += done
        while raw and lines:
            line = lines.pop(0)
            if line.startswith(b'#resize '):
                r, c = line.split()[1:]
                set_size(master, int(r), int(c))
            else:
                os.write(master, line + b'\n')
        if master in ready:
            try:
                out = os.read(master, 65536)
            except OSError:
                out = b''
            if not out:
                break
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
    status = child.wait()
    sys.exit(128 - status if status < 0 else status)


main()
