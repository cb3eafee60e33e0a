#!/usr/bin/env python3
"""A minimal QMP client (standard library only) for the test guest.

    qmp.py SOCKET screendump FILE [--format ppm|png] [--device ID] [--head N]
    qmp.py SOCKET system_reset | system_powerdown | quit | query-status
    qmp.py SOCKET cmd COMMAND [JSON_ARGUMENTS]

As a module: `with Qmp(path) as q: q.execute("screendump", filename=...)`.
"""
import json
import socket
import sys
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path, connect_timeout=10.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.events = []
        self.execute("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QmpError("QMP connection closed")
        return json.loads(line)

    def execute(self, command, **arguments):
        """Runs a command and returns its "return" value; raises QmpError on an "error" reply."""
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def screendump(self, filename, fmt="ppm", device=None, head=None):
        args = {"filename": filename, "format": fmt}
        if device is not None:
            args["device"] = device
        if head is not None:
            args["head"] = head
        return self.execute("screendump", **args)

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, command, rest = argv[1], argv[2], argv[3:]
    try:
        with Qmp(path) as q:
            if command == "screendump":
                if not rest:
                    print("screendump needs a FILE", file=sys.stderr)
                    return 2
                options = {"--format": "ppm", "--device": None, "--head": None}
                filename = rest[0]
                for i in range(1, len(rest) - 1, 2):
                    if rest[i] not in options:
                        print(f"unknown option {rest[i]}", file=sys.stderr)
                        return 2
                    options[rest[i]] = rest[i + 1]
                head = int(options["--head"]) if options["--head"] is not None else None
                q.screendump(filename, options["--format"], options["--device"], head)
                result = None
            elif command == "cmd":
                arguments = json.loads(rest[1]) if len(rest) > 1 else {}
                result = q.execute(rest[0], **arguments)
            else:
                try:
                    result = q.execute(command)
                except QmpError:
                    raise
                except (ConnectionError, OSError):
                    result = None  # quit: QEMU may close the socket before answering
            if result:
                print(json.dumps(result, indent=2))
    except (QmpError, OSError) as error:
        print(f"qmp.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
