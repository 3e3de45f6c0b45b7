#!/usr/bin/env bash
# Boot one throwaway test guest on a vblk socket and report its verdict.
#
#   run-guest.sh --socket PATH --test write|verify|readonly|demo
#                [--transport vhost-user|vfio-user] [--mode modern|legacy|intx]
#                [--serial S] [--num-queues N] [--log FILE] [--timeout SECONDS]
#
# vhost-user uses bookworm's QEMU 7.2, vfio-user trixie-backports' QEMU 11;
# both run from their chroots in $VBLK_CACHE through the chroot's own loader.
# Exit 0 when the guest printed "VBLK-TEST: PASS <test>".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
TRANSPORT=vhost-user MODE=modern TEST="" SOCK="" SERIAL="" NQ=2 LOG="" TIMEOUT=240 FIO=0
while [ $# -gt 0 ]; do
    case "$1" in
        --socket) SOCK=$2; shift 2 ;;
        --test) TEST=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --serial) SERIAL=$2; shift 2 ;;
        --num-queues) NQ=$2; shift 2 ;;
        --log) LOG=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --with-fio) FIO=1; shift ;;
        *) echo "run-guest.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$SOCK" ] && [ -n "$TEST" ] || { echo "run-guest.sh: --socket and --test are required" >&2; exit 2; }
LOG=${LOG:-$(mktemp /tmp/vblk-guest.XXXXXX.log)}

# The initramfs, rebuilt when its inputs change.
KROOT=$CACHE/kernel/root
KERNEL=$(ls "$KROOT"/boot/vmlinuz-* | head -1)
BUSYBOX=$CACHE/bookworm/bin/busybox
INITRD=$CACHE/initramfs-$( (cat "$HERE/init.sh" "$HERE/mkinitramfs.py"; echo "fio=$FIO") | sha256sum | cut -c1-16).cpio.gz
if [ ! -f "$INITRD" ]; then
    EXTRA=()
    if [ "$FIO" = 1 ]; then
        # fio and every library it links, from the bookworm chroot.
        B=$CACHE/bookworm
        [ -x "$B/usr/bin/fio" ] || { echo "run-guest.sh: no fio in $B (run scripts/setup-guest-env.sh)" >&2; exit 1; }
        LIST=$(mktemp)
        echo "$B/usr/bin/fio /usr/bin/fio" >"$LIST"
        echo "$(readlink -f "$B/lib64/ld-linux-x86-64.so.2") /lib64/ld-linux-x86-64.so.2" >>"$LIST"
        chroot "$B" ldd /usr/bin/fio | awk '/=>/ {print $1, $3}' | while read -r name path; do
            echo "$(readlink -f "$B$path") /lib/x86_64-linux-gnu/$name"
        done >>"$LIST"
        EXTRA=("$LIST")
    fi
    python3 "$HERE/mkinitramfs.py" "$KROOT" "$BUSYBOX" "$HERE/init.sh" "$INITRD" "${EXTRA[@]}"
fi

case "$TRANSPORT" in
    vhost-user) R=$CACHE/bookworm; DEV=(-chardev "socket,id=c0,path=$SOCK" -device "vhost-user-blk-pci,chardev=c0,num-queues=$NQ") ;;
    vfio-user) R=$CACHE/trixie; DEV=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$SOCK\",\"type\":\"unix\"}}") ;;
    *) echo "run-guest.sh: unknown transport $TRANSPORT" >&2; exit 2 ;;
esac
CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4 vblk.test=$TEST"
[ -n "$SERIAL" ] && CMDLINE="$CMDLINE vblk.serial=$SERIAL"
case "$MODE" in
    modern) ;;
    legacy) CMDLINE="$CMDLINE vblk.force_legacy=1" ;;
    intx) CMDLINE="$CMDLINE pci=nomsi" ;;
    *) echo "run-guest.sh: unknown mode $MODE" >&2; exit 2 ;;
esac

QEMU=("$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu"
      "$R/usr/bin/qemu-system-x86_64" -L "$R/usr/share/qemu" -L "$R/usr/share/seabios")
export QEMU_MODULE_DIR=$R/usr/lib/x86_64-linux-gnu/qemu
t0=$(date +%s.%N)
set +e
timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" -accel tcg -machine q35 -cpu max -smp 2 -m 512M \
    -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
    "${DEV[@]}" </dev/null >"$LOG" 2>&1
rc=$?
set -e
secs=$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || python3 -c "print(round($(date +%s.%N) - $t0, 1))")
if grep -q "VBLK-TEST: PASS $TEST" "$LOG"; then
    echo "guest $TEST ($TRANSPORT, $MODE): PASS in ${secs}s (log $LOG)"
    exit 0
fi
if [ $rc = 124 ] || [ $rc = 137 ]; then why="timed out after ${TIMEOUT}s"
elif grep -q "VBLK-TEST: FAIL" "$LOG"; then why=$(grep "VBLK-TEST: FAIL" "$LOG" | head -1)
else why="QEMU exited with $rc and no PASS marker"; fi
echo "guest $TEST ($TRANSPORT, $MODE): FAILED: $why" >&2
echo "----- last lines of $LOG -----" >&2
tail -n 40 "$LOG" >&2
exit 1
