#!/usr/bin/env python3
"""Extracts the uncompressed ELF kernel from a bzImage, for QEMU's PVH boot.

    extract_vmlinux.py VMLINUZ OUTPUT

Debian's kernel is XZ-compressed; decompressing it under TCG costs the guest about 4 s per boot.
QEMU boots an ELF kernel that has a PVH entry point (the Xen ELF note PHYS32_ENTRY, present with
CONFIG_PVH=y) directly, so the decompression happens once, here. Exit 1 when the image is not
XZ-compressed or the kernel has no PVH entry: the caller then uses the bzImage.
"""
import lzma
import os
import struct
import sys

XZ_MAGIC = b"\xfd7zXZ\x00"
XEN_ELFNOTE_PHYS32_ENTRY = 18


def elf_has_pvh_note(elf):
    if elf[:4] != b"\x7fELF" or elf[4] != 2:  # 64-bit ELF only
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        image = f.read()
    start = image.find(XZ_MAGIC)
    if start < 0:
        print("extract_vmlinux.py: no XZ stream in the image", file=sys.stderr)
        return 1
    # The stream is followed by the bzImage's trailer: decompress the first stream only.
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
    if not elf_has_pvh_note(elf):
        print("extract_vmlinux.py: the kernel has no PVH entry point", file=sys.stderr)
        return 1
    with open(sys.argv[2] + ".tmp", "wb") as f:
        f.write(elf)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
