#!/usr/bin/env bash
# Foundation guest test: a real Linux guest (QEMU 7.2, TCG, vhost-user-blk-pci,
# 2 queues) writes through the daemon; the host checks the image byte for
# byte; a second boot reads the data back; a read-only export refuses writes.
#
#   tests/guest/e2e.sh
#
# Environment:
#   VBLK_E2E_DAEMON=vblk (default) | qsd   the daemon under test: target/release/vblk,
#                       or the host's qemu-storage-daemon as the reference
#   VBLK=PATH           the vblk binary (default target/release/vblk)
#   VBLK_E2E_SIZE=64M   the image size
#   VBLK_E2E_KEEP=1     keep the work directory (logs, image) even on success
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DAEMON=${VBLK_E2E_DAEMON:-vblk}
VBLK=${VBLK:-$ROOT/target/release/vblk}
SIZE=${VBLK_E2E_SIZE:-64M}
case "$DAEMON" in
    vblk) [ -x "$VBLK" ] || { echo "e2e: $VBLK missing: run cargo build --release" >&2; exit 1; } ;;
    qsd) command -v qemu-storage-daemon >/dev/null || { echo "e2e: no qemu-storage-daemon on the host" >&2; exit 1; } ;;
    *) echo "e2e: VBLK_E2E_DAEMON must be vblk or qsd" >&2; exit 2 ;;
esac
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
W=$(mktemp -d /tmp/vblk-e2e.XXXXXX)
IMG=$W/disk.img SOCK=$W/vblk.sock CTL=$W/vblk.ctl SERIAL=vblk-e2e-serial
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        echo "e2e: FAILED; $DAEMON's log ($W/daemon.log) ends with:" >&2
        tail -n 20 "$W/daemon.log" >&2 2>/dev/null || true
        echo "e2e: work directory kept: $W" >&2
    elif [ "${VBLK_E2E_KEEP:-0}" = 1 ]; then echo "e2e: work directory kept: $W"
    else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
t_all=$(now)

serve() { # rw|ro
    rm -f "$SOCK"
    echo "--- serve ($1) $(date +%T)" >>"$W/daemon.log"
    if [ "$DAEMON" = vblk ]; then
        local ro=()
        [ "$1" = ro ] && ro=(--readonly)
        "$VBLK" serve --image "$IMG" --vhost-user "$SOCK" --num-queues 2 --serial "$SERIAL" --control "$CTL" "${ro[@]}" \
            2>>"$W/daemon.log" &
    else
        local w=on r=off
        [ "$1" = ro ] && w=off r=on
        qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$IMG,read-only=$r" \
            --export "type=vhost-user-blk,id=e0,node-name=f,addr.type=unix,addr.path=$SOCK,writable=$w,num-queues=2" \
            >>"$W/daemon.log" 2>&1 &
    fi
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    echo "e2e: $DAEMON did not start" >&2; exit 1
}
stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" = 0 ] || { echo "e2e: $DAEMON exited with $rc on SIGTERM" >&2; exit 1; }
    if [ "$DAEMON" = vblk ]; then
        [ ! -e "$SOCK" ] || { echo "e2e: vblk left its socket behind" >&2; exit 1; }
    fi
}
boot() { # TEST
    local args=(--transport vhost-user --socket "$SOCK" --log "$W/guest-$1.log" --test "$1")
    # qemu-storage-daemon's GET_ID answers a fixed "vhost_user_blk"; vblk must return --serial.
    [ "$DAEMON" = vblk ] && args+=(--serial "$SERIAL")
    "$HERE/run-guest.sh" "${args[@]}"
}

echo "== e2e over vhost-user, daemon: $DAEMON, image $SIZE"
truncate -s "$SIZE" "$IMG"

t=$(now)
echo "== boot 1: the guest writes a pattern (first, middle, last sector), reads it back, flushes"
serve rw
boot write
if [ "$DAEMON" = vblk ]; then
    "$VBLK" stats --socket "$CTL" --json >"$W/stats.json"
fi
stop
python3 "$HERE/check-image.py" "$IMG" "after boot 1"
if [ "$DAEMON" = vblk ]; then
    python3 - "$W/stats.json" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))["queues"]
tot = lambda k: sum(x[k] for x in q)
assert tot("req_out") >= 4, f"vblk saw {tot('req_out')} writes, the guest made 4: {q}"
assert tot("req_flush") >= 1, "the guest's flushes never reached vblk"
assert tot("req_get_id") >= 1, "GET_ID never reached vblk"
print("host: vblk counted %d writes, %d flushes, %d GET_ID, %d interrupts over %d queues" % (
    tot("req_out"), tot("req_flush"), tot("req_get_id"), tot("interrupts"), len(q)))
PY
fi
echo "== boot 1 done in $(since "$t")"

t=$(now)
echo "== boot 2: a fresh daemon and guest read the pattern again"
serve rw
boot verify
stop
python3 "$HERE/check-image.py" "$IMG" "after boot 2"
echo "== boot 2 done in $(since "$t")"

t=$(now)
echo "== boot 3: read-only export: reads work, writes fail"
cp "$IMG" "$W/before.img"
serve ro
boot readonly
stop
cmp "$IMG" "$W/before.img" || { echo "e2e: the read-only image changed" >&2; exit 1; }
echo "host: read-only image unchanged"
echo "== boot 3 done in $(since "$t")"
echo "e2e (vhost-user, $DAEMON): PASS in $(since "$t_all")"
