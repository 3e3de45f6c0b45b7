#!/usr/bin/env bash
# Boot one throwaway test guest on a vblk socket and report its verdict.
#
#   run-guest.sh --socket PATH --test TEST
#                [--transport vhost-user|vfio-user] [--mode modern|legacy|intx]
#                [--num-queues N] [--serial S] [--log FILE] [--timeout SECONDS]
#                [--append "KERNEL ARGS"] [--with-fio] [--print-cmd]
#                [--reconnect] [--trace FILE] [--packed|--split]
#                [--qemu bookworm|trixie] [--qmp PATH] [--incoming URI]
#
# TEST is a workload of the guest's /init (tests/guest/init.d/): write, verify,
# ioerr, readonly (data.sh); crash, migrate (writers.sh); resize, wce,
# wce-reconnect (config.sh); bench, demo (show.sh).
# vhost-user: bookworm's QEMU 7.2, -device vhost-user-blk-pci (N queues).
# vfio-user:  trixie-backports' QEMU 11, -device vfio-user-pci (the daemon is the
#             whole PCI function; --num-queues is the daemon's business).
# Both run from their chroots in $VBLK_CACHE through the chroot's own loader,
# TCG, q35, 2 vCPUs, 512 MiB of shared memfd RAM, serial console on ttyS0.
# --mode legacy adds vblk.force_legacy=1 (the guest's /init loads virtio_pci
# with force_legacy=1), --mode intx adds pci=nomsi.
# The kernel is $VBLK_CACHE/kernel/vmlinux when setup-guest-env.sh extracted
# it (PVH boot, no decompression under TCG), otherwise the bzImage;
# VBLK_GUEST_KERNEL=PATH overrides.
# Exit 0 when the guest printed "VBLK-TEST: PASS <test>"; otherwise the reason
# (timeout, FAIL marker, panic, no PASS marker) and the end of the serial log.
# --print-cmd prints the QEMU command line instead of running it.
# --reconnect (vhost-user): the chardev reconnects when the daemon goes away
# (QEMU 7.2: reconnect=1, one attempt a second), for the crash test.
# --trace FILE: QEMU's vhost_user_read/_write/_event trace events go to FILE
# ("vhost_user_write req:31" is GET_INFLIGHT_FD, req:32 SET_INFLIGHT_FD).
# --packed: packed virtqueues (vhost-user: packed=on on the QEMU device;
# vfio-user: the daemon offers them) and the guest fails its test unless
# VIRTIO_F_RING_PACKED (bit 34) was negotiated; --split: the guest checks
# that it was not (vhost-user: QEMU's default packed=off).
# --qemu trixie (vhost-user): QEMU 11 from the trixie chroot instead of 7.2.
# --qmp PATH: a QMP server on the unix socket PATH (live migration tests).
# --incoming URI: start as a migration destination (QEMU -incoming URI); the
# verdict then comes from the console output after the migration.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
TRANSPORT=vhost-user MODE=modern TEST="" SOCK="" SERIAL="" NQ=2 LOG="" TIMEOUT=180 FIO=0 APPEND="" PRINT=0 RECONNECT=0 TRACE="" PACKED=""
QEMU_CHROOT=bookworm QMP="" INCOMING=""
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
        --append) APPEND=$2; shift 2 ;;
        --with-fio) FIO=1; shift ;;
        --print-cmd) PRINT=1; shift ;;
        --reconnect) RECONNECT=1; shift ;;
        --trace) TRACE=$2; shift 2 ;;
        --packed) PACKED=1; shift ;;
        --split) PACKED=0; shift ;;
        --qemu) QEMU_CHROOT=$2; shift 2 ;;
        --qmp) QMP=$2; shift 2 ;;
        --incoming) INCOMING=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-guest.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$SOCK" ] && [ -n "$TEST" ] || { echo "run-guest.sh: --socket and --test are required" >&2; exit 2; }

FIOARG=()
[ "$FIO" = 1 ] && FIOARG=(--with-fio)
INITRD=$("$HERE/build-initramfs.sh" "${FIOARG[@]}")
KERNEL=${VBLK_GUEST_KERNEL:-}
if [ -z "$KERNEL" ]; then
    if [ -s "$CACHE/kernel/vmlinux" ]; then KERNEL=$CACHE/kernel/vmlinux
    else KERNEL=$(ls "$CACHE"/kernel/root/boot/vmlinuz-* | head -1); fi
fi

case "$TRANSPORT" in
    vhost-user)
        case "$QEMU_CHROOT" in
            bookworm|trixie) R=$CACHE/$QEMU_CHROOT ;;
            *) echo "run-guest.sh: --qemu must be bookworm or trixie" >&2; exit 2 ;;
        esac
        CHR="socket,id=c0,path=$SOCK"
        [ "$RECONNECT" = 1 ] && CHR="$CHR,reconnect=1"
        PK=""
        [ "$PACKED" = 1 ] && PK=",packed=on"
        DEV=(-chardev "$CHR" -device "vhost-user-blk-pci,chardev=c0,num-queues=$NQ$PK") ;;
    vfio-user) R=$CACHE/trixie; DEV=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$SOCK\",\"type\":\"unix\"}}") ;;
    *) echo "run-guest.sh: unknown transport $TRANSPORT" >&2; exit 2 ;;
esac
[ -x "$R/usr/bin/qemu-system-x86_64" ] || { echo "run-guest.sh: no QEMU in $R: run scripts/setup-guest-env.sh" >&2; exit 1; }
CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4 vblk.test=$TEST"
[ -n "$SERIAL" ] && CMDLINE="$CMDLINE vblk.serial=$SERIAL"
case "$MODE" in
    modern) ;;
    legacy) CMDLINE="$CMDLINE vblk.force_legacy=1" ;;
    intx) CMDLINE="$CMDLINE pci=nomsi" ;;
    *) echo "run-guest.sh: unknown mode $MODE" >&2; exit 2 ;;
esac
[ -n "$PACKED" ] && CMDLINE="$CMDLINE vblk.packed=$PACKED"
[ -n "$APPEND" ] && CMDLINE="$CMDLINE $APPEND"

QEMU=("$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu"
      "$R/usr/bin/qemu-system-x86_64" -L "$R/usr/share/qemu" -L "$R/usr/share/seabios"
      -accel tcg -machine q35 -cpu max -smp 2 -m 512M
      -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem
      -nodefaults -no-user-config -display none -serial stdio -no-reboot
      -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE"
      "${DEV[@]}")
[ -n "$QMP" ] && QEMU+=(-qmp "unix:$QMP,server=on,wait=off")
[ -n "$INCOMING" ] && QEMU+=(-incoming "$INCOMING")
[ -n "$TRACE" ] && QEMU+=(-trace vhost_user_read -trace vhost_user_write -trace vhost_user_event -D "$TRACE")
export QEMU_MODULE_DIR=$R/usr/lib/x86_64-linux-gnu/qemu
if [ "$PRINT" = 1 ]; then
    printf 'QEMU_MODULE_DIR=%q' "$QEMU_MODULE_DIR"
    printf ' %q' "${QEMU[@]}"
    echo
    exit 0
fi

LOG=${LOG:-$(mktemp /tmp/vblk-guest.XXXXXX.log)}
t0=$EPOCHREALTIME
set +e
timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$LOG" 2>&1
rc=$?
set -e
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
what="guest $TEST ($TRANSPORT, $MODE)"
if grep -q "VBLK-TEST: PASS $TEST" "$LOG" && ! grep -q "VBLK-TEST: FAIL" "$LOG"; then
    echo "$what: PASS in ${secs}s (log $LOG)"
    grep -E "^VBLK-TEST: (fio|dmesg|crash:)" "$LOG" | sed 's/^VBLK-TEST: /  guest: /' || true
    exit 0
fi
if grep -q "VBLK-TEST: FAIL" "$LOG"; then why=$(grep -m1 "VBLK-TEST: FAIL" "$LOG")
elif grep -q "Kernel panic" "$LOG"; then why=$(grep -m1 "Kernel panic" "$LOG")
elif [ $rc = 124 ] || [ $rc = 137 ]; then
    if grep -q "VBLK-TEST: START" "$LOG"; then why="timed out after ${TIMEOUT}s while the test ran (I/O hang?)"
    else why="timed out after ${TIMEOUT}s before the test started (no /dev/vda? stuck boot?)"; fi
else why="QEMU exited with status $rc and no PASS marker"; fi
echo "$what: FAILED after ${secs}s: $why" >&2
echo "----- last lines of $LOG -----" >&2
tail -n 40 "$LOG" >&2
exit 1
