#!/usr/bin/env python3
"""One QMP command on a QEMU's unix socket; prints the "return" as JSON.

usage: qmp.py SOCKET COMMAND [ARGUMENTS-AS-JSON] [--timeout SECONDS]

Exits 1 with QEMU's error (or the connection's) on stderr. Events that
arrive before the answer are skipped.
"""
import json
import socket
import sys


def main():
    args = [a for a in sys.argv[1:]]
    timeout = 10.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, cmd = args[0], args[1]
    arguments = json.loads(args[2]) if len(args) > 2 else None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    f = s.makefile("rwb")

    def recv():
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("QEMU closed the QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def call(c, a=None):
        req = {"execute": c}
        if a is not None:
            req["arguments"] = a
        f.write(json.dumps(req).encode() + b"\n")
        f.flush()
        return recv()

    recv()  # the greeting
    r = call("qmp_capabilities")
    if "error" in r:
        print("qmp_capabilities: %s" % r["error"], file=sys.stderr)
        return 1
    r = call(cmd, arguments)
    if "error" in r:
        print("%s: %s" % (cmd, r["error"].get("desc", r["error"])), file=sys.stderr)
        return 1
    print(json.dumps(r.get("return", {})))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as e:
        print("qmp.py: %s" % e, file=sys.stderr)
        sys.exit(1)
