#!/usr/bin/env bash
# Boot the tests/guest initramfs against a vblk vfio-user socket with a chosen
# accelerator (the shared tests/guest/run-guest.sh always uses TCG). Used to
# check the KVM-only paths: INTx through KVM's resample eventfd (QEMU sends
# SET_IRQS INTx UNMASK with an eventfd) and MSI-X through irqfds.
#   guest-accel.sh SOCKET MODE(modern|legacy|intx) TEST(write|verify) [ACCEL] [LOG]
set -euo pipefail
SOCK=$1 MODE=$2 TEST=$3 ACCEL=${4:-kvm} LOG=${5:-/tmp/vblk-guest-accel.log}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
G=$ROOT/tests/guest
INITRD=$CACHE/initramfs-$( (cat "$G/init.sh" "$G"/init.d/*.sh "$G/mkinitramfs.py"; ls "$G/init.d"; echo "fio=0") | sha256sum | cut -c1-16).cpio.gz
[ -f "$INITRD" ] || python3 "$G/mkinitramfs.py" "$CACHE/kernel/root" "$CACHE/bookworm/bin/busybox" "$G/init.sh" "$INITRD"
KERNEL=$(ls "$CACHE"/kernel/root/boot/vmlinuz-* | head -1)
CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4 vblk.test=$TEST"
case "$MODE" in modern) ;; legacy) CMDLINE="$CMDLINE vblk.force_legacy=1" ;; intx) CMDLINE="$CMDLINE pci=nomsi" ;; esac
R=$CACHE/trixie
CPU=max; [ "$ACCEL" = kvm ] && CPU=host
export QEMU_MODULE_DIR=$R/usr/lib/x86_64-linux-gnu/qemu
set +e
timeout --kill-after=10 "${TIMEOUT:-180}" "$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu" \
    "$R/usr/bin/qemu-system-x86_64" -L "$R/usr/share/qemu" -L "$R/usr/share/seabios" \
    -accel "$ACCEL" -machine q35 -cpu $CPU -smp 2 -m 512M \
    -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
    -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$SOCK\",\"type\":\"unix\"}}" </dev/null >"$LOG" 2>&1
rc=$?
set -e
if grep -q "VBLK-TEST: PASS $TEST" "$LOG"; then echo "guest $TEST ($MODE, $ACCEL): PASS"; grep -A3 "interrupts (virtio)" "$LOG" | tail -3; exit 0; fi
echo "guest $TEST ($MODE, $ACCEL): FAILED (rc $rc)" >&2; tail -n 30 "$LOG" >&2; exit 1
