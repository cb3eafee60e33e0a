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


def _unfilter(kind, line, prior, bpp):
    """Undoes one PNG filter (RFC 2083 6.1) on a row of bytes, given the row above."""
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(line, prior))
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 1:
            out[i] = (out[i] + left) & 0xFF
        elif kind == 3:
            out[i] = (out[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            corner = prior[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            out[i] = (out[i] + predictor) & 0xFF
        else:
            raise ValueError(f"PNG filter type {kind}")
    return out


def read_png(path):
    """Returns (width, height, rgb_bytes) of an 8-bit RGB or RGBA PNG (what QEMU's screendump
    writes with format=png, as virsh screenshot asks for)."""
    import struct
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR")
    w, h, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs (depth {depth}, colour {colour})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prior = [], bytearray(stride)
    for y in range(h):
        start = y * (stride + 1)
        line = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], prior, bpp)
        prior = line
        rows.append(bytes(line) if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
    return w, h, b"".join(rows)


def read_image(path):
    """PPM or PNG, by the file's first bytes."""
    with open(path, "rb") as f:
        magic = f.read(8)
    return read_png(path) if magic.startswith(b"\x89PNG") else read_ppm(path)


def compare(path, variant, size=None):
    """Returns (ok, message). The image is a binary PPM or a PNG."""
    w, h, pixels = read_image(path)
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
