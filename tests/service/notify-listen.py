#!/usr/bin/env python3
"""A service manager's end of the notify protocol, for the service tests: binds a unix datagram
socket at PATH, prints {"listening": PATH} and then one JSON line per datagram received,
{"ms": monotonic milliseconds, "pid": sender, "fields": {NAME: VALUE}}. Exits when stdin closes.
"""
import json
import os
import select
import socket
import struct
import sys
import time


def main():
    path = sys.argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    print(json.dumps({'listening': path}), flush=True)
    while True:
        readable, _, _ = select.select([sock, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            return
        if sock not in readable:
            continue
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack('iII', value[:12])[0]
        fields = dict(line.split('=', 1) for line in data.decode().split('\n') if '=' in line)
        print(json.dumps({'ms': time.monotonic() * 1000, 'pid': pid, 'fields': fields}), flush=True)


if __name__ == '__main__':
    main()
