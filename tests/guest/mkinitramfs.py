#!/usr/bin/env python3
"""Build the test guest's initramfs (newc cpio, gzip) with no host tools:
busybox, /init, the workloads /init sources (/init.d/*.sh: the init.d
folder next to INIT), and the virtio modules in dependency order.

The kernel package ships no modules.dep (and busybox modinfo insists on
one), so each module's dependencies are read from its own .modinfo ELF
section ("depends=a,b"), and the load order is a topological sort of that
graph. Compressed modules (.ko.xz, .ko.gz) are stored uncompressed.

usage: mkinitramfs.py KERNEL_ROOT BUSYBOX INIT OUT [EXTRA_LIST]

EXTRA_LIST: a file of "SOURCE DEST" lines (e.g. fio and its libraries from
the bookworm chroot) copied into the image.
"""
import gzip
import io
import os
import lzma
import stat
import struct
import sys

WANTED = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"]


def read_module(path):
    """A module's bytes, uncompressed (.ko, .ko.xz, .ko.gz)."""
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    elif path.endswith(".gz"):
        data = gzip.decompress(data)
    return data


def modinfo(path):
    """The key=value strings of the module's .modinfo ELF section."""
    data = read_module(path)
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise SystemExit(f"{path}: not a 64-bit ELF module")
    end = "<" if data[5] == 1 else ">"
    shoff, = struct.unpack_from(end + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)

    def section(i):
        name, _typ, _flags, _addr, off, size = struct.unpack_from(end + "IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    info = {}
    for i in range(shnum):
        name, off, size = section(i)
        if data[stroff + name:data.index(b"\0", stroff + name)] == b".modinfo":
            for kv in data[off:off + size].split(b"\0"):
                if b"=" in kv:
                    k, v = kv.decode(errors="replace").split("=", 1)
                    info.setdefault(k, v)
            return info
    raise SystemExit(f"{path}: no .modinfo section")


def find_modules(kroot):
    found = {}
    for d, _, files in os.walk(os.path.join(kroot, "lib", "modules")):
        for f in files:
            for ext in (".ko", ".ko.xz", ".ko.gz"):
                if f.endswith(ext):
                    found[f[: -len(ext)].replace("-", "_")] = os.path.join(d, f)
    return found


def load_order(mods, wanted):
    order, seen = [], set()

    def visit(m, stack=()):
        if m in seen:
            return
        if m in stack:
            raise SystemExit(f"dependency cycle at {m}")
        if m not in mods:
            raise SystemExit(f"module {m} not found in the kernel package")
        deps = [x for x in modinfo(mods[m]).get("depends", "").split(",") if x]
        for dep in deps:
            visit(dep.replace("-", "_"), stack + (m,))
        seen.add(m)
        order.append(m)

    for w in wanted:
        visit(w)
    return order


class Cpio:
    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name, data=b"", mode=0o100644):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(
            "%08x" % v
            for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)
        )
        self.ino += 1
        self.buf.write(hdr.encode() + name_b)
        self.buf.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dir(self, name):
        self.add(name, mode=stat.S_IFDIR | 0o755)

    def finish(self):
        self.add("TRAILER!!!", mode=0)
        return self.buf.getvalue()


def main():
    kroot, busybox, init, out = sys.argv[1:5]
    mods = find_modules(kroot)
    order = load_order(mods, WANTED)
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "modules"):
        c.dir(d)
    c.add("bin/busybox", open(busybox, "rb").read(), mode=stat.S_IFREG | 0o755)
    c.add("init", open(init, "rb").read(), mode=stat.S_IFREG | 0o755)
    # The workloads, by theme, that /init sources (". /init.d/NAME.sh").
    initd = os.path.join(os.path.dirname(os.path.abspath(init)), "init.d")
    c.dir("init.d")
    for f in sorted(os.listdir(initd)):
        if f.endswith(".sh"):
            c.add(f"init.d/{f}", open(os.path.join(initd, f), "rb").read())
    for i, m in enumerate(order):
        c.add(f"modules/{i:02d}-{m}.ko", read_module(mods[m]))
    c.add("modules/order", ("\n".join(order) + "\n").encode())
    if len(sys.argv) > 5:
        made = set()
        for line in open(sys.argv[5]):
            if not line.strip():
                continue
            src, dest = line.split()
            parts = dest.strip("/").split("/")
            for k in range(1, len(parts)):
                d = "/".join(parts[:k])
                if d not in made and d not in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "modules"):
                    c.dir(d)
                    made.add(d)
            c.add(dest.strip("/"), open(src, "rb").read(), mode=stat.S_IFREG | 0o755)
    with open(out + ".tmp", "wb") as f:
        f.write(gzip.compress(c.finish(), 6))
    os.replace(out + ".tmp", out)
    print("initramfs: modules in load order: " + " ".join(order), file=sys.stderr)


if __name__ == "__main__":
    main()
