#!/usr/bin/env python3
"""The test guest's frame pattern, on the host side: compare a screendump with it, pixel for pixel.

    pattern.py check IMAGE.ppm --variant V [--size WxH]   exit 0 when every pixel matches
    pattern.py write IMAGE.ppm W H V                       write the expected frame

This must stay identical to pattern_pixel() in guest/programs/drmtest.c. For a W x H frame and a
variant V in 0..7, as 0xRRGGBB:
  - the 1-pixel border (x == 0, y == 0, x == W-1 or y == H-1) is white 0xFFFFFF;
  - rows y >= H*3//4 are a ramp: red = (0x80 + 0x40*V) & 0xFF, green = y & 0xFF, blue = x & 0xFF;
  - the other rows are 8 vertical bars: BAR_COLOURS[(x*8//W + V) % 8].
Standard library only; reads binary PPM (P6, maxval 255), which QEMU's screendump writes.
"""
import argparse
import sys

BAR_COLOURS = [0xC0C0C0, 0xC0C000, 0x00C0C0, 0x00C000, 0xC000C0, 0xC00000, 0x0000C0, 0x101010]
BORDER_COLOUR = 0xFFFFFF


def pattern_pixel(x, y, w, h, variant):
    if x == 0 or y == 0 or x == w - 1 or y == h - 1:
        return BORDER_COLOUR
    if y >= h * 3 // 4:
        return (((0x80 + 0x40 * variant) & 0xFF) << 16) | ((y & 0xFF) << 8) | (x & 0xFF)
    return BAR_COLOURS[(x * 8 // w + variant) % 8]


def rgb(value):
    return bytes(((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF))


def expected_row(y, w, h, variant):
    return b"".join(rgb(pattern_pixel(x, y, w, h, variant)) for x in range(w))


def expected_rows(w, h, variant):
    """Yields the RGB bytes of each row; rows of the bars part are all the same object."""
    bars = expected_row(1, w, h, variant) if h > 2 else None
    for y in range(h):
        if 0 < y < h - 1 and y < h * 3 // 4:
            yield bars
        else:
            yield expected_row(y, w, h, variant)


def read_ppm(path):
    """Returns (width, height, rgb_bytes) of a binary PPM."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError(f"{path}: not a binary 8-bit PPM")
    w, h = int(fields[1]), int(fields[2])
    pixels = data[pos + 1 : pos + 1 + w * h * 3]
    if len(pixels) != w * h * 3:
        raise ValueError(f"{path}: truncated ({len(pixels)} of {w * h * 3} bytes)")
    return w, h, pixels


def compare(path, variant, size=None):
    """Returns (ok, message)."""
    w, h, pixels = read_ppm(path)
    if size and (w, h) != size:
        return False, f"size {w}x{h}, expected {size[0]}x{size[1]}"
    bad, first, box = 0, None, None
    stride = w * 3
    for y, row in enumerate(expected_rows(w, h, variant)):
        got = pixels[y * stride : (y + 1) * stride]
        if got == row:
            continue
        for x in range(w):
            if got[x * 3 : x * 3 + 3] != row[x * 3 : x * 3 + 3]:
                bad += 1
                if first is None:
                    first = (x, y, got[x * 3 : x * 3 + 3].hex(), row[x * 3 : x * 3 + 3].hex())
                box = (x, y, x, y) if box is None else (min(box[0], x), min(box[1], y), max(box[2], x), max(box[3], y))
    if bad == 0:
        return True, f"{w}x{h} variant {variant}: all {w * h} pixels match"
    x, y, got, want = first
    return False, (f"{w}x{h} variant {variant}: {bad} pixels differ, first at ({x},{y}) "
                   f"got #{got} expected #{want}, box ({box[0]},{box[1]})-({box[2]},{box[3]})")


def write_ppm(path, w, h, variant):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        for row in expected_rows(w, h, variant):
            f.write(row)


def parse_size(text):
    w, _, h = text.partition("x")
    return int(w), int(h)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check")
    check.add_argument("image")
    check.add_argument("--variant", type=int, default=0)
    check.add_argument("--size", type=parse_size)
    write = sub.add_parser("write")
    write.add_argument("image")
    write.add_argument("width", type=int)
    write.add_argument("height", type=int)
    write.add_argument("variant", type=int)
    args = parser.parse_args()
    if args.command == "write":
        write_ppm(args.image, args.width, args.height, args.variant)
        return 0
    ok, message = compare(args.image, args.variant, args.size)
    print(("OK " if ok else "MISMATCH ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
