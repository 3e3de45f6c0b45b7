#!/usr/bin/env bash
# Packed virtqueues in a real guest (VIRTIO_F_RING_PACKED): every boot's
# guest fails unless feature bit 34 was negotiated (run-guest.sh --packed
# checks /sys/block/vda/device/features), so a pass over split rings is
# impossible.
#   1. vhost-user (QEMU 7.2, vhost-user-blk-pci,packed=on, 2 queues): the
#      guest writes the pattern and runs fio with crc32c verify; the host
#      checks the image and vblk's counters; a second boot on a fresh daemon
#      re-reads everything (fio --verify_only).
#   2. vfio-user (QEMU 11, modern PCI; the guest driver takes packed rings
#      when the device offers them): the same write boot, when the trixie
#      chroot is there; then `vblk serve --no-packed-rings`: the modern
#      guest must run split rings (bit 34 clear), with fio verify.
# Every boot ends with the guest's dmesg check.
#
#   tests/guest/e2e-packed.sh
#
# Environment:
#   VBLK=PATH              the vblk binary (default target/release/vblk)
#   VBLK_E2E_KEEP=1        keep the work directory
#   VBLK_PACKED_VFIO=0     skip the vfio-user boot
#   VBLK_E2E_INJECT=split  show that the layout check can fail: the first
#                          boot runs over split rings (QEMU packed=off) while
#                          the guest still demands packed
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
VBLK=${VBLK:-$ROOT/target/release/vblk}
CACHE="${VBLK_CACHE:-$HOME/.cache/vblk}"
INJECT=${VBLK_E2E_INJECT:-}
[ -x "$VBLK" ] || { echo "e2e-packed: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir e2e-packed
IMG=$W/disk.img SOCK=$W/vblk.sock CTL=$W/vblk.ctl SERIAL=vblk-packed
PID="" PHASE=setup
cleanup() {
    local rc=$?
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        echo "e2e-packed: FAILED during $PHASE; vblk's log ($W/daemon.log) ends with:" >&2
        tail -n 20 "$W/daemon.log" >&2 2>/dev/null || true
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_all=$(now)

serve() { # --vhost-user|--vfio-user [vblk options]
    local t=$1; shift
    rm -f "$SOCK"
    echo "--- serve $t $* $(date +%T)" >>"$W/daemon.log"
    "$VBLK" serve --image "$IMG" "$t" "$SOCK" --num-queues 2 --serial "$SERIAL" --control "$CTL" "$@" \
        >>"$W/daemon.log" 2>&1 &
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    echo "e2e-packed: vblk did not start" >&2; exit 1
}
stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" = 0 ] || { echo "e2e-packed: vblk exited with $rc on SIGTERM" >&2; exit 1; }
}
counters() { # LABEL: vblk saw the guest's requests, and no ring broke
    "$VBLK" stats --socket "$CTL" --json >"$W/stats.json"
    python3 - "$W/stats.json" "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
q = s["queues"]
tot = lambda k: sum(x[k] for x in q)
assert tot("req_out") >= 4, f"vblk saw {tot('req_out')} writes: {q}"
assert tot("req_flush") >= 1, "no flush reached vblk"
assert tot("broken_rings") == 0, f"a ring broke: {q}"
print("host (%s): %d writes, %d reads, %d flushes, %d interrupts, %d suppressed; requests per queue: %s" % (
    sys.argv[2], tot("req_out"), tot("req_in"), tot("req_flush"), tot("interrupts"), tot("interrupts_suppressed"),
    "/".join(str(x["req_in"] + x["req_out"]) for x in q)))
PY
}

echo "== e2e over packed virtqueues${INJECT:+, injecting $INJECT}"
truncate -s 64M "$IMG"
t=$(now)
PHASE="vhost-user boot 1 (write, packed=on)"
serve --vhost-user
layout=(--packed)
if [ "$INJECT" = split ]; then
    # QEMU keeps packed=off (split rings) but the guest still demands bit 34.
    layout=(--append vblk.packed=1)
    echo "host: INJECTED: split rings while the guest demands packed"
fi
"$HERE/run-guest.sh" --transport vhost-user --socket "$SOCK" --serial "$SERIAL" --log "$W/guest-vu-write.log" \
    --test write --with-fio "${layout[@]}"
grep -h "ring layout" "$W/guest-vu-write.log" | sed 's/^VBLK-TEST: /  guest: /'
counters "vhost-user write"
stop
PHASE="the host's image check after boot 1"
python3 "$HERE/check-image.py" "$IMG" "after the packed write boot"
echo "== vhost-user boot 1 done in $(since "$t")"

t=$(now)
PHASE="vhost-user boot 2 (verify, packed=on)"
serve --vhost-user
"$HERE/run-guest.sh" --transport vhost-user --socket "$SOCK" --serial "$SERIAL" --log "$W/guest-vu-verify.log" \
    --test verify --with-fio --packed
stop
python3 "$HERE/check-image.py" "$IMG" "after the packed verify boot"
echo "== vhost-user boot 2 done in $(since "$t")"

if [ "${VBLK_PACKED_VFIO:-1}" = 1 ] && [ -x "$CACHE/trixie/usr/bin/qemu-system-x86_64" ]; then
    t=$(now)
    PHASE="vfio-user boot (write, modern PCI, packed)"
    rm -f "$IMG"
    truncate -s 64M "$IMG"
    serve --vfio-user
    "$HERE/run-guest.sh" --transport vfio-user --mode modern --socket "$SOCK" --serial "$SERIAL" \
        --log "$W/guest-vfio-write.log" --test write --with-fio --packed --timeout 300
    counters "vfio-user write"
    stop
    python3 "$HERE/check-image.py" "$IMG" "after the vfio-user packed write boot"
    echo "== vfio-user boot done in $(since "$t")"
    t=$(now)
    PHASE="vfio-user boot (write, modern PCI, --no-packed-rings: split)"
    rm -f "$IMG"
    truncate -s 64M "$IMG"
    serve --vfio-user --no-packed-rings
    "$HERE/run-guest.sh" --transport vfio-user --mode modern --socket "$SOCK" --serial "$SERIAL" \
        --log "$W/guest-vfio-split.log" --test write --with-fio --split --timeout 300
    counters "vfio-user write, split"
    stop
    python3 "$HERE/check-image.py" "$IMG" "after the vfio-user split write boot"
    echo "== vfio-user split boot done in $(since "$t")"
else
    echo "== vfio-user boot skipped (VBLK_PACKED_VFIO=0 or no trixie QEMU)"
fi
echo "e2e-packed: PASS in $(since "$t_all")"
