#!/usr/bin/env python3
"""Writes a directory tree as a cpio "newc" archive (the initramfs format), reproducibly.

    mkcpio.py STAGING_DIR OUTPUT [--node PATH:c|b:MAJOR:MINOR]...

Every entry is owned by root with mtime 0, entries are sorted, and device nodes given with
--node are added without needing root or mknod (the kernel needs /dev/console in the
initramfs to give /init its stdin/stdout). The output is not compressed.
"""
import argparse
import os
import stat
import sys


def pad4(n):
    return (4 - n % 4) % 4


class Writer:
    def __init__(self, out):
        self.out = out
        self.ino = 1

    def entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_bytes = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_bytes), 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(header + name_bytes + b"\0" * pad4(len(header) + len(name_bytes)))
        self.out.write(data + b"\0" * pad4(len(data)))

    def trailer(self):
        self.ino = 0
        self.entry("TRAILER!!!", 0)


def walk(root):
    """Yields archive names (relative, no leading slash) in sorted, parents-first order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            yield rel
        for f in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            yield f if rel == "." else os.path.join(rel, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("staging")
    parser.add_argument("output")
    parser.add_argument("--node", action="append", default=[], help="PATH:c|b:MAJOR:MINOR")
    args = parser.parse_args()

    with open(args.output + ".tmp", "wb") as out:
        w = Writer(out)
        seen = set()
        for name in walk(args.staging):
            if name in seen:
                continue
            seen.add(name)
            path = os.path.join(args.staging, name)
            st = os.lstat(path)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                w.entry(name, stat.S_IFLNK | 0o777, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                w.entry(name, stat.S_IFDIR | perm, nlink=2)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    w.entry(name, stat.S_IFREG | perm, f.read())
            else:
                sys.exit(f"mkcpio.py: {path}: unsupported file type")
        for spec in args.node:
            path, kind, major, minor = spec.split(":")
            mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
            w.entry(path.lstrip("/"), mode, rdev=(int(major), int(minor)))
        w.trailer()
    os.replace(args.output + ".tmp", args.output)


if __name__ == "__main__":
    main()
