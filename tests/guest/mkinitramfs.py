#!/usr/bin/env python3
"""Build the test guest's initramfs (newc cpio, gzip) with no host tools:
busybox, /init, and the virtio modules in dependency order.

The kernel package ships no modules.dep, so each module's dependencies are
read from its own .modinfo section ("depends=a,b"), and the load order is a
topological sort of that graph.

usage: mkinitramfs.py KERNEL_ROOT BUSYBOX INIT OUT [EXTRA_LIST]

EXTRA_LIST: a file of "SOURCE DEST" lines (e.g. fio and its libraries from
the bookworm chroot) copied into the image.
"""
import gzip
import io
import os
import stat
import sys

WANTED = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"]


def modinfo(path):
    data = open(path, "rb").read()
    info = {}
    for key in (b"depends=", b"name="):
        i = data.find(b"\0" + key)
        if i >= 0:
            j = data.index(b"\0", i + 1)
            info[key[:-1].decode()] = data[i + 1 + len(key):j].decode()
    return info


def find_modules(kroot):
    found = {}
    for d, _, files in os.walk(os.path.join(kroot, "lib", "modules")):
        for f in files:
            if f.endswith(".ko"):
                found[f[:-3].replace("-", "_")] = os.path.join(d, f)
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
    for i, m in enumerate(order):
        c.add(f"modules/{i:02d}-{m}.ko", open(mods[m], "rb").read())
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
