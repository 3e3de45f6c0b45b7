#!/usr/bin/env bash
# Foundation guest test: a real Linux guest (QEMU 7.2, TCG, vhost-user-blk-pci,
# 2 queues, 2 vCPUs) writes through the daemon; the host checks the image byte
# for byte; a second boot reads the data back; a read-only export refuses writes.
# For each cache variant (the defaults, --cache writeback --aio io-uring, and
# --cache none):
#   boot `write`:  the pattern blocks, then fio with crc32c verify (2 direct
#                  libaio jobs at iodepth 32, 4..64 KiB random blocks, and a
#                  buffered psync job) in regions clear of the pattern
#   host:          check-image.py; vblk's counters; then partly-cache.py puts
#                  the image into an alternating cached/uncached host page
#                  cache state (every other 16 KiB chunk dropped)
#   boot `verify`: a fresh daemon; the guest re-reads the pattern and fio
#                  --verify_only re-reads and checks everything fio wrote
# Every boot ends with the guest's dmesg check (no I/O error lines).
# Then one `readonly` boot on a --readonly export.
#
#   tests/guest/e2e.sh
#
# Environment:
#   VBLK_E2E_DAEMON=vblk (default) | qsd   the daemon under test: target/release/vblk,
#                       or the host's qemu-storage-daemon as the reference
#   VBLK=PATH           the vblk binary (default target/release/vblk)
#   VBLK_E2E_SIZE=64M   the image size
#   VBLK_E2E_KEEP=1     keep the work directory (logs, image) even on success
#   VBLK_E2E_CACHES="default none"   the cache variants to run
#   VBLK_E2E_INJECT=corrupt|dmesg   show that the checks can fail: corrupt
#                       flips a byte of fio's region in the image between the
#                       boots (the verify boot must fail), dmesg plants a fake
#                       "I/O error" kernel line in the write boot (its dmesg
#                       check must fail)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
DAEMON=${VBLK_E2E_DAEMON:-vblk}
VBLK=${VBLK:-$ROOT/target/release/vblk}
SIZE=${VBLK_E2E_SIZE:-64M}
case "$DAEMON" in
    vblk) [ -x "$VBLK" ] || { echo "e2e: $VBLK missing: run cargo build --release" >&2; exit 1; } ;;
    qsd) command -v qemu-storage-daemon >/dev/null || { echo "e2e: no qemu-storage-daemon on the host" >&2; exit 1; } ;;
    *) echo "e2e: VBLK_E2E_DAEMON must be vblk or qsd" >&2; exit 2 ;;
esac
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir e2e
IMG=$W/disk.img SOCK=$W/vblk.sock CTL=$W/vblk.ctl SERIAL=vblk-e2e-serial
PID="" PHASE="setup" CACHE_OPT=default
INJECT=${VBLK_E2E_INJECT:-}
cleanup() {
    local rc=$?
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        echo "e2e: FAILED during $PHASE ($DAEMON, cache $CACHE_OPT); $DAEMON's log ($W/daemon.log) ends with:" >&2
        tail -n 20 "$W/daemon.log" >&2 2>/dev/null || true
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_all=$(now)

serve() { # rw|ro   (cache variant: $CACHE_OPT)
    rm -f "$SOCK"
    echo "--- serve ($1, cache $CACHE_OPT) $(date +%T)" >>"$W/daemon.log"
    if [ "$DAEMON" = vblk ]; then
        local opts=()
        [ "$1" = ro ] && opts+=(--readonly)
        [ "$CACHE_OPT" = none ] && opts+=(--cache none)
        "$VBLK" serve --image "$IMG" --vhost-user "$SOCK" --num-queues 2 --serial "$SERIAL" --control "$CTL" "${opts[@]}" \
            >>"$W/daemon.log" 2>&1 &
    else
        local w=on r=off d=off
        [ "$1" = ro ] && w=off r=on
        [ "$CACHE_OPT" = none ] && d=on
        qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$IMG,read-only=$r,cache.direct=$d" \
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
boot() { # TEST [run-guest.sh args]
    local t=$1; shift
    local args=(--transport vhost-user --socket "$SOCK" --log "$W/guest-$t-$CACHE_OPT.log" --test "$t" "$@")
    # qemu-storage-daemon's GET_ID answers a fixed "vhost_user_blk"; vblk must return --serial.
    [ "$DAEMON" = vblk ] && args+=(--serial "$SERIAL")
    "$HERE/run-guest.sh" "${args[@]}"
}

echo "== e2e over vhost-user, daemon: $DAEMON, image $SIZE, cache variants: ${VBLK_E2E_CACHES:-default none}${INJECT:+, injecting $INJECT}"
for CACHE_OPT in ${VBLK_E2E_CACHES:-default none}; do
    case "$CACHE_OPT" in default|none) ;; *) echo "e2e: unknown cache variant $CACHE_OPT" >&2; exit 2 ;; esac
    rm -f "$IMG"
    truncate -s "$SIZE" "$IMG"

    t=$(now)
    PHASE="boot 1 (write)"
    echo "== [cache $CACHE_OPT] boot 1: the guest writes the pattern (first, middle, last sector) and fio's regions with verify"
    serve rw
    extra=(--with-fio)
    [ "$INJECT" = dmesg ] && extra+=(--append vblk.inject=dmesg)
    boot write "${extra[@]}"
    if [ "$DAEMON" = vblk ]; then
        "$VBLK" stats --socket "$CTL" --json >"$W/stats.json"
    fi
    stop
    PHASE="the host's checks after boot 1"
    python3 "$HERE/check-image.py" "$IMG" "after boot 1"
    if [ "$DAEMON" = vblk ]; then
        python3 - "$W/stats.json" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))["queues"]
tot = lambda k: sum(x[k] for x in q)
assert tot("req_out") >= 4, f"vblk saw {tot('req_out')} writes, the guest made 4: {q}"
assert tot("req_flush") >= 1, "the guest's flushes never reached vblk"
assert tot("req_get_id") >= 1, "GET_ID never reached vblk"
print("host: vblk counted %d writes, %d reads, %d flushes, %d GET_ID, %d interrupts; requests per queue: %s" % (
    tot("req_out"), tot("req_in"), tot("req_flush"), tot("req_get_id"), tot("interrupts"),
    "/".join(str(x["req_in"] + x["req_out"]) for x in q)))
PY
    fi
    python3 "$HERE/partly-cache.py" "$IMG" "before boot 2"
    if [ "$INJECT" = corrupt ]; then
        # One byte inside fio's first direct region (1 MiB + 5 MiB), which fio
        # wrote completely: the verify boot's fio --verify_only must catch it.
        python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); b = os.pread(fd, 1, 6 << 20 | 100); os.pwrite(fd, bytes([b[0] ^ 0xff]), 6 << 20 | 100)" "$IMG"
        echo "host: INJECTED: flipped the byte at $((6 << 20 | 100)) (fio's region) before boot 2"
    fi
    echo "== [cache $CACHE_OPT] boot 1 done in $(since "$t")"

    t=$(now)
    PHASE="boot 2 (verify)"
    echo "== [cache $CACHE_OPT] boot 2: a fresh daemon, a partly cached image; the guest re-reads the pattern and fio verifies its regions"
    serve rw
    boot verify --with-fio
    stop
    PHASE="the host's checks after boot 2"
    python3 "$HERE/check-image.py" "$IMG" "after boot 2"
    echo "== [cache $CACHE_OPT] boot 2 done in $(since "$t")"
done

t=$(now)
CACHE_OPT=default
PHASE="boot 3 (readonly)"
echo "== boot 3: read-only export: reads work, writes fail"
cp "$IMG" "$W/before.img"
serve ro
boot readonly
stop
cmp "$IMG" "$W/before.img" || { echo "e2e: the read-only image changed" >&2; exit 1; }
echo "host: read-only image unchanged"
echo "== boot 3 done in $(since "$t")"
echo "e2e (vhost-user, $DAEMON): PASS in $(since "$t_all")"
