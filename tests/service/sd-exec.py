#!/usr/bin/env python3
"""Starts a command the way systemd would, for the service tests: with listening sockets passed as
LISTEN_FDS (from fd 3 on), the watchdog variables and a journal stream, each naming this process,
which exec() hands to the command.

usage: sd-exec.py [--listen ADDRESS:PORT]... [--fdnames NAME:NAME...] [--listen-pid PID]
                  [--watchdog-usec USEC] [--watchdog-pid PID] [--journal] -- COMMAND ARGS...

Each --listen socket is bound without SO_REUSEADDR, so the command could not bind the same port
itself while it holds the inherited one. --listen-pid/--watchdog-pid name another process (the
negative tests); by default they name this one. --journal sets JOURNAL_STREAM to stderr's
device:inode.
"""
import argparse
import os
import socket
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--listen', action='append', default=[])
    parser.add_argument('--fdnames')
    parser.add_argument('--listen-pid', type=int)
    parser.add_argument('--watchdog-usec', type=int)
    parser.add_argument('--watchdog-pid', type=int)
    parser.add_argument('--journal', action='store_true')
    parser.add_argument('command', nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('no command')

    # Bound first, then moved to 3, 4, ... from descriptors above that range.
    held = []
    for spec in args.listen:
        address, port = spec.rsplit(':', 1)
        family = socket.AF_INET6 if ':' in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        # As systemd does for its stream sockets: a port whose earlier connections linger in
        # TIME_WAIT (reservedPort found it free with node, which sets it too) can still be bound.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.strip('[]'), int(port)))
        sock.listen(16)
        held.append(os.dup2(sock.fileno(), 100 + len(held)))
        sock.close()
    for i, fd in enumerate(held):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)

    env = dict(os.environ)
    for name in ('LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'WATCHDOG_USEC', 'WATCHDOG_PID'):
        env.pop(name, None)
    if held:
        env['LISTEN_FDS'] = str(len(held))
        env['LISTEN_PID'] = str(args.listen_pid or os.getpid())
        if args.fdnames:
            env['LISTEN_FDNAMES'] = args.fdnames
    if args.watchdog_usec:
        env['WATCHDOG_USEC'] = str(args.watchdog_usec)
        env['WATCHDOG_PID'] = str(args.watchdog_pid or os.getpid())
    if args.journal:
        st = os.fstat(2)
        env['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


if __name__ == '__main__':
    main()
