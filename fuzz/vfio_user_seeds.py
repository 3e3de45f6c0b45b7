#!/usr/bin/env python3
"""Write the hand-made seeds of corpus/vfio_user_session (run from fuzz/).

Input layout of the target: byte 0 (bit 0: the body sends a valid VERSION
first), then a raw vfio-user message stream (16-byte headers: id u16,
command u16, size u32 incl. header, flags u32, error u32)."""
import os
import struct


def msg(i, c, payload=b'', flags=0):
    return struct.pack('<HHIII', i, c, 16 + len(payload), flags, 0) + payload


ver = msg(0, 1, b'\x00\x00\x00\x00'
          + b'{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":8192}}\x00')


def region_info(i, idx): return msg(i, 5, struct.pack('<IIIIQQ', 32, 0, idx, 0, 0, 0))
def rd(i, reg, off, n): return msg(i, 9, struct.pack('<QII', off, reg, n))
def wr(i, reg, off, data): return msg(i, 10, struct.pack('<QII', off, reg, len(data)) + data)
def dmamap(i, addr, size, fl=3): return msg(i, 2, struct.pack('<IIQQQ', 32, fl, 0, addr, size))
def dmaunmap(i, addr, size, fl=0): return msg(i, 3, struct.pack('<IIQQ', 24, fl, addr, size))
def irqinfo(i, idx): return msg(i, 7, struct.pack('<IIII', 16, 0, idx, 0))
def setirqs(i, idx, flags, start, count):
    return msg(i, 8, struct.pack('<IIIII', 20, flags, idx, start, count))


seeds = {
    'probe': b'\x00' + ver + msg(1, 4, struct.pack('<IIII', 16, 0, 0, 0))
    + b''.join(region_info(2 + k, k) for k in range(5)) + irqinfo(8, 0) + irqinfo(9, 1) + irqinfo(10, 2),
    'regions': b'\x01' + rd(1, 0, 0, 4) + rd(2, 1, 0x10, 8) + wr(3, 1, 0x20, b'\x01\x02\x03\x04')
    + rd(4, 3, 0x3ff0, 16) + wr(5, 0, 0x7c, b'\xff' * 4) + rd(6, 2, 0, 4) + rd(7, 0, 0x80, 1) + msg(8, 13),
    'dma': b'\x01' + dmamap(1, 0, 0x10000) + dmamap(2, 0x100000, 0x1000) + dmamap(3, 0x8000, 0x1000)
    + dmaunmap(4, 0, 0x10000) + dmamap(5, 0x20000, 0x1000, 1) + dmamap(6, 0x30000, 0x1000)
    + dmamap(7, 0x40000, 0x1000) + dmamap(8, 0x50000, 0x1000) + dmaunmap(9, 0, 0, 2),
    'irqs': b'\x01' + setirqs(1, 1, 0x1 | 0x20, 0, 3) + setirqs(2, 1, 0x4 | 0x20, 0, 3)
    + setirqs(3, 0, 0x1 | 0x8, 0, 1) + setirqs(4, 1, 0x1 | 0x20, 2, 2) + setirqs(5, 2, 0x1 | 0x20, 0, 1) + msg(6, 13),
    'no_reply_and_junk': b'\x01' + rd(1, 0, 0, 4)[:8] + struct.pack('<II', 32, 0x10) + rd(1, 0, 0, 4)[16:]
    + msg(2, 0x7777, b'\x01' * 9) + msg(3, 16, b'\x00' * 8) + msg(4, 6, struct.pack('<IIII', 16, 0, 0, 0)),
}
os.makedirs('corpus/vfio_user_session', exist_ok=True)
for k, v in seeds.items():
    with open('corpus/vfio_user_session/seed-' + k, 'wb') as f:
        f.write(v)
