#!/usr/bin/env bash
# Prepare everything the guest tests need, without touching the host's QEMU:
#   * a Debian bookworm chroot with qemu-system-x86 7.2, busybox-static and cpio
#   * a Debian trixie chroot with qemu-system-x86 from trixie-backports (>= 10.1,
#     which has vfio-user-pci)
#   * a Debian linux-image-6.1 kernel package, unpacked
# Everything lands in $VBLK_CACHE (default ~/.cache/vblk); reruns are quick.
# The Debian mirror is read from the host's apt sources, never hard-coded.
set -euo pipefail

CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
mkdir -p "$CACHE"
log() { echo "[setup-guest-env] $*" >&2; }

mirror() {
    local src=/etc/apt/sources.list.d/debian.sources m=""
    if [ -r "$src" ]; then
        m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$src")
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || { log "cannot find a Debian mirror in $src"; exit 1; }
    echo "$m"
}

need_host_pkg() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing host packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

chroot_apt() {
    local root=$1; shift
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
    umount "$root/proc" 2>/dev/null || true
}

# $1 = suite, $2 = dest, $3 = extra apt suite ('' or 'trixie-backports')
make_chroot() {
    local suite=$1 dest=$2 backports=$3 m
    m=$(mirror)
    if [ -f "$dest/.vblk-ready" ]; then return 0; fi
    log "debootstrap $suite into $dest (mirror from host apt sources)"
    rm -rf "$dest"
    debootstrap --variant=minbase "$suite" "$dest" "$m" >"$CACHE/debootstrap-$suite.log" 2>&1 || {
        tail -20 "$CACHE/debootstrap-$suite.log" >&2; exit 1; }
    echo "deb $m $suite main" >"$dest/etc/apt/sources.list"
    if [ -n "$backports" ]; then
        echo "deb $m $backports main" >>"$dest/etc/apt/sources.list"
    fi
    chroot_apt "$dest" apt-get update -qq
    if [ -n "$backports" ]; then
        chroot_apt "$dest" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends -t "$backports" qemu-system-x86 >/dev/null
    else
        chroot_apt "$dest" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends qemu-system-x86 >/dev/null
    fi
    chroot_apt "$dest" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends busybox-static cpio xz-utils >/dev/null
    touch "$dest/.vblk-ready"
}

kernel() {
    local root=$CACHE/bookworm dest=$CACHE/kernel
    if [ -f "$dest/.vblk-ready" ]; then return 0; fi
    log "downloading a Debian linux-image-6.1 kernel"
    rm -rf "$dest"; mkdir -p "$dest"
    local pkg
    pkg=$(chroot "$root" apt-cache search --names-only '^linux-image-6\.1\.[0-9.-]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
    [ -n "$pkg" ] || { log "no linux-image-6.1 package found"; exit 1; }
    (cd "$root/tmp" && rm -f linux-image-*.deb && chroot "$root" sh -c "cd /tmp && apt-get download -qq $pkg")
    dpkg-deb -x "$root"/tmp/linux-image-*.deb "$dest/root"
    echo "$pkg" >"$dest/package"
    touch "$dest/.vblk-ready"
}

# The uncompressed kernel (vmlinux, an ELF with a PVH entry note): QEMU boots it
# directly (-kernel vmlinux takes the PVH path), which skips the bzImage's xz
# decompression - about 8 of a TCG boot's 15 seconds. Optional: run-guest.sh
# falls back to the bzImage when it is missing.
vmlinux() {
    local dest=$CACHE/kernel
    [ -s "$dest/vmlinux" ] && return 0
    local bz cfg
    bz=$(ls "$dest"/root/boot/vmlinuz-* | head -1)
    cfg=$(ls "$dest"/root/boot/config-* | head -1)
    grep -q '^CONFIG_PVH=y' "$cfg" || { log "kernel has no CONFIG_PVH: guests boot the bzImage"; return 0; }
    log "extracting the uncompressed kernel for PVH boot"
    python3 - "$bz" "$dest/vmlinux.$$" <<'PY' || { rm -f "$dest/vmlinux.$$"; log "no vmlinux extracted: guests boot the bzImage"; return 0; }
import gzip, lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
def xz(i):
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[i:])
def gz(i):
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i:])
for magic, fn in ((b"\xfd7zXZ\x00", xz), (b"\x1f\x8b\x08", gz)):
    i = data.find(magic)
    while i >= 0:
        try:
            out = fn(i)
            if out[:4] == b"\x7fELF":
                open(sys.argv[2], "wb").write(out)
                sys.exit(0)
        except Exception:
            pass
        i = data.find(magic, i + 1)
sys.exit("no xz- or gzip-compressed ELF kernel found in " + sys.argv[1])
PY
    mv "$dest/vmlinux.$$" "$dest/vmlinux"
}

# fio, in the bookworm chroot: the reference for the io_uring backend and the
# guest-side benchmark (the chroot's loader runs it, like QEMU).
extras() {
    local root=$CACHE/bookworm
    [ -x "$root/usr/bin/fio" ] && return 0
    log "installing fio into the bookworm chroot"
    chroot_apt "$root" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends fio >/dev/null
}

need_host_pkg debootstrap
which=${1:-all}
case "$which" in
    bookworm) make_chroot bookworm "$CACHE/bookworm" ""; kernel; vmlinux; extras ;;
    trixie) make_chroot trixie "$CACHE/trixie" trixie-backports ;;
    all)
        make_chroot bookworm "$CACHE/bookworm" "" &
        b=$!
        make_chroot trixie "$CACHE/trixie" trixie-backports &
        t=$!
        wait $b; wait $t
        kernel
        vmlinux
        extras ;;
    *) echo "usage: $0 [all|bookworm|trixie]" >&2; exit 2 ;;
esac
log "ready in $CACHE"
