#!/usr/bin/env python3
"""Check, from the host, the pattern the test guest's `write` test leaves in a
disk image, byte for byte (tests/guest/init.d/data.sh `write` writes it with
write_all, in tests/guest/init.sh).

usage: check-image.py IMAGE [LABEL]

The pattern at byte offset O is the line "vblk-O\\n" repeated, cut to the
block's length. Blocks (512-byte sectors, bytes): the first sector (4096),
the middle (65536), the middle + 1001 (1536) and the very last sector (512).
The 512 bytes after each block, and before the last one, must still be
zero: a write that spilled over its range shows up there.
"""
import sys


def blocks(sectors):
    mid = sectors // 2
    return [(0, 4096), (mid, 65536), (mid + 1001, 1536), (sectors - 1, 512)]


def pattern(off, n):
    line = ("vblk-%d\n" % off).encode()
    return (line * (n // len(line) + 1))[:n]


def main():
    img = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else img
    data = open(img, "rb").read()
    if len(data) % 512:
        sys.exit(f"{label}: image size {len(data)} is not a multiple of 512")
    sectors = len(data) // 512
    bs = blocks(sectors)
    for s, n in bs:
        off = s * 512
        want, got = pattern(off, n), data[off:off + n]
        if got != want:
            bad = next(i for i in range(n) if got[i] != want[i])
            sys.exit(f"{label}: image bytes at sector {s} differ from the guest's pattern "
                     f"(first difference at byte +{bad}: {got[bad:bad + 16]!r}, want {want[bad:bad + 16]!r})")
    # Guards: untouched zero ranges around the written blocks.
    guards = [(s * 512 + n, 512) for s, n in bs[:-1]] + [((sectors - 2) * 512, 512)]
    for off, n in guards:
        if any(data[off:off + n]):
            sys.exit(f"{label}: bytes {off}..{off + n} next to a written block are not zero: a write spilled over")
    print(f"host: {label}: image verified byte for byte at {len(bs)} places "
          f"(sectors {', '.join(str(s) for s, _ in bs)}, the last of {sectors}), zero guards intact")


if __name__ == "__main__":
    main()
