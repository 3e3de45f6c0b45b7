#!/usr/bin/env bash
# Build the test guest's initramfs (newc cpio, gzip) or find it in the cache,
# and print its path on stdout.
#
#   build-initramfs.sh [--with-fio]
#
# Contents: busybox-static (from the bookworm chroot), /init (init.sh next to
# this script), the workloads it sources (/init.d/*.sh: init.d/ next to this
# script), and the modules virtio_ring, virtio, virtio_pci_legacy_dev,
# virtio_pci_modern_dev, virtio_pci, virtio_blk from the unpacked Debian kernel
# package, numbered in dependency order. The package ships no modules.dep and
# busybox's modinfo refuses to work without one, so mkinitramfs.py reads each
# module's "depends=" from its .modinfo ELF section and sorts topologically.
# /init loads them with busybox insmod, which ignores /proc/cmdline: module
# parameters (virtio_pci force_legacy=1) are passed by /init itself.
# --with-fio adds fio and the libraries it links (for the guest benchmark).
#
# The image is cached by content: $VBLK_CACHE/initramfs-<hash>.cpio.gz, where
# the hash covers init.sh, init.d/*.sh (contents and names), mkinitramfs.py,
# this script, the kernel package, busybox and (with --with-fio) fio. Needs
# scripts/setup-guest-env.sh first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
FIO=0
while [ $# -gt 0 ]; do
    case "$1" in
        --with-fio) FIO=1; shift ;;
        *) echo "build-initramfs.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
B=$CACHE/bookworm
KROOT=$CACHE/kernel/root
BUSYBOX=$B/bin/busybox
[ -x "$BUSYBOX" ] && [ -d "$KROOT/lib/modules" ] || {
    echo "build-initramfs.sh: no busybox or kernel in $CACHE: run scripts/setup-guest-env.sh" >&2
    exit 1
}
[ "$FIO" = 0 ] || [ -x "$B/usr/bin/fio" ] || {
    echo "build-initramfs.sh: no fio in $B: run scripts/setup-guest-env.sh" >&2
    exit 1
}

KEY=$( {
    cat "$HERE/init.sh" "$HERE"/init.d/*.sh "$HERE/mkinitramfs.py" "$0"
    ls "$HERE/init.d"
    cat "$CACHE/kernel/package" 2>/dev/null || ls "$KROOT/lib/modules"
    sha256sum <"$BUSYBOX"
    echo "fio=$FIO"
    [ "$FIO" = 0 ] || sha256sum <"$B/usr/bin/fio"
} | sha256sum | cut -c1-16)
OUT=$CACHE/initramfs-$KEY.cpio.gz
if [ -s "$OUT" ]; then
    echo "$OUT"
    exit 0
fi

EXTRA=()
LIST=""
trap '[ -n "$LIST" ] && rm -f "$LIST"' EXIT
if [ "$FIO" = 1 ]; then
    # fio, the chroot's loader and every library fio links, at the same paths.
    LIST=$(mktemp)
    echo "$B/usr/bin/fio /usr/bin/fio" >"$LIST"
    echo "$(readlink -f "$B/lib64/ld-linux-x86-64.so.2") /lib64/ld-linux-x86-64.so.2" >>"$LIST"
    chroot "$B" ldd /usr/bin/fio | awk '/=>/ {print $1, $3}' | while read -r name path; do
        echo "$(readlink -f "$B$path") /lib/x86_64-linux-gnu/$name"
    done >>"$LIST"
    EXTRA=("$LIST")
fi
# Build under a private name, then rename: concurrent builds cannot collide.
python3 "$HERE/mkinitramfs.py" "$KROOT" "$BUSYBOX" "$HERE/init.sh" "$OUT.$$" "${EXTRA[@]}"
mv -f "$OUT.$$" "$OUT"
# Drop images of older inputs that nobody has built for a week.
find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "initramfs-$KEY.cpio.gz" -mtime +7 -delete 2>/dev/null || true
echo "$OUT"
