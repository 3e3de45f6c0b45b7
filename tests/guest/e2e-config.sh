#!/usr/bin/env bash
# Real guests for the configuration that changes while a guest runs:
#
# resize  - online resize (`vblk resize --socket CTL SIZE`), over vhost-user
#           (QEMU 7.2: CONFIG_CHANGE_MSG on the back-end channel, QEMU
#           re-reads the config and interrupts the guest) and over vfio-user
#           (QEMU 11) in modern (config MSI-X vector), legacy
#           (force_legacy=1, MSI-X) and INTx (pci=nomsi: ISR bit 1) modes.
#           The guest (init.d/config.sh `resize`) prints RESIZE-READY; the
#           host grows the disk from 64 MiB to 96 MiB with --resize-file; the
#           guest sees the new size in /sys/block/vda/size and "capacity
#           change" in dmesg, writes and reads the new last sector and prints
#           RESIZE-GROWN; the host shrinks the export to 48 MiB (no
#           --resize-file: the file stays at 96 MiB); the guest sees it, and
#           nothing passes the new end. The host then checks the image file:
#           96 MiB, the pattern at the grown disk's last sector, and vblk's
#           counters (config_interrupts over vfio-user).
# wce     - the write cache (VIRTIO_BLK_F_CONFIG_WCE), over vhost-user and
#           vfio-user modern: the guest (init.d/config.sh `wce`) toggles
#           /sys/block/vda/cache_type, writes 64 KiB in write-back mode and
#           64 KiB in write-through mode (O_DIRECT, no flush), prints
#           WCE-WRITTEN; the host SIGKILLs vblk at once (no exit flush) and
#           checks both blocks in the image file, and with cachestat(2)
#           that the write-through block has no dirty page in the host page
#           cache (it was written with RWF_DSYNC), while the write-back block
#           normally still has (printed, not required: the kernel may have
#           written it back meanwhile). The page cache survives SIGKILL, so
#           "the bytes are in the file" alone proves little; "not dirty"
#           proves they reached the disk. The deterministic proof that every
#           write-through write is FUA is host-side
#           (crates/device/tests/live_config.rs).
# wce-reconnect - vhost-user with QEMU's reconnect=1: the guest chooses
#           write-through, the host SIGKILLs vblk and starts a new one
#           (--write-cache on) on the socket; QEMU reconnects but does not
#           replay the guest's choice, so the new daemon must go
#           write-through by itself (it sees the old inflight buffer come
#           back); the guest's next write (O_DIRECT, no flush) must leave no
#           dirty page in the host page cache when vblk is SIGKILLed again.
#
# Environment:
#   VBLK=PATH             the vblk binary (default target/release/vblk)
#   VBLK_CONFIG_CASES="resize:vhost-user resize:modern resize:legacy resize:intx wce:vhost-user wce:modern wce-reconnect:vhost-user"
#   VBLK_E2E_KEEP=1       keep the work directory even on success
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
VBLK=${VBLK:-$ROOT/target/release/vblk}
[ -x "$VBLK" ] || { echo "e2e-config: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir config
PID="" GPID="" LOGF="" PHASE="setup"
cleanup() {
    local rc=$?
    [ -n "$GPID" ] && { kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null; }
    [ -n "$PID" ] && { kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    if [ $rc != 0 ]; then
        echo "e2e-config: FAILED during $PHASE" >&2
        [ -n "$LOGF" ] && [ -f "$LOGF" ] && { echo "e2e-config: vblk's log ($LOGF) ends with:" >&2; tail -n 20 "$LOGF" >&2; }
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
CASES=${VBLK_CONFIG_CASES:-resize:vhost-user resize:modern resize:legacy resize:intx wce:vhost-user wce:modern wce-reconnect:vhost-user}
MIB=$((1 << 20))
t_all=$(now)
die() { echo "e2e-config: $*" >&2; exit 1; }

serve() { # TRANSPORT [vblk options]
    local tr=$1; shift
    SOCK=$W/$tag.sock CTL=$W/$tag.ctl LOGF=$W/vblk-$tag.log
    rm -f "$SOCK" "$CTL"
    RUST_LOG=info "$VBLK" serve --image "$W/$tag.img" "--$tr" "$SOCK" --num-queues 2 --control "$CTL" "$@" >>"$LOGF" 2>&1 &
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && [ -S "$CTL" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    die "vblk did not start"
}
# guest TEST [run-guest.sh args]: boot in the background; the log is $GLOG.
guest() {
    local test=$1; shift
    GLOG=$W/guest-$tag.log
    : >"$GLOG"
    "$HERE/run-guest.sh" --transport "$transport" --mode "$mode" --socket "$SOCK" --log "$GLOG" \
        --test "$test" --timeout 240 "$@" >"$W/run-$tag.out" 2>&1 &
    GPID=$!
}
# await MARKER: until the guest's console shows "VBLK-TEST: MARKER" (180 s).
await() {
    PHASE="waiting for $1 ($tag)"
    for _ in $(seq 3600); do
        grep -q "VBLK-TEST: $1" "$GLOG" 2>/dev/null && return 0
        if ! kill -0 "$GPID" 2>/dev/null; then cat "$W/run-$tag.out" >&2; die "the guest ended before $1"; fi
        sleep 0.05
    done
    die "no $1 from the guest in 180 s"
}
guest_done() {
    PHASE="the guest's verdict ($tag)"
    local rc=0
    wait "$GPID" || rc=$?
    GPID=""
    cat "$W/run-$tag.out"
    [ $rc = 0 ] || die "guest failed ($tag)"
}
stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" = 0 ] || die "vblk exited with $rc on SIGTERM"
}
# check_pattern IMAGE OFFSET LEN: the guest's pattern ("vblk-OFFSET" lines) is there.
check_pattern() {
    python3 - "$@" <<'PY'
import sys
path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = ("vblk-%d\n" % off).encode()
want = (line * (n // len(line) + 1))[:n]
with open(path, "rb") as f:
    f.seek(off)
    got = f.read(n)
if got != want:
    i = next((k for k in range(min(len(got), n)) if got[k] != want[k]), len(got))
    sys.exit("%s: the guest's %d bytes at %d differ from byte %d on (%r)" % (path, n, off, i, got[i:i + 16]))
PY
}
# dirty IMAGE OFFSET LEN: dirty pages of the range in the host page cache
# (cachestat(2), Linux 6.5), or "?" where the kernel lacks it.
dirty() {
    python3 - "$@" <<'PY'
import ctypes, os, sys
path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Range(ctypes.Structure): _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
class Stat(ctypes.Structure): _fields_ = [(k, ctypes.c_uint64) for k in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(path, os.O_RDONLY)
r, st = Range(off, n), Stat()
rc = libc.syscall(451, fd, ctypes.byref(r), ctypes.byref(st), 0)
print("?" if rc != 0 else st.dirty + st.writeback)
PY
}

for c in $CASES; do
    what=${c%%:*} mode=${c#*:}
    case "$mode" in vhost-user) transport=vhost-user mode=modern ;; modern|legacy|intx) transport=vfio-user ;; *) die "unknown case $c" ;; esac
    tag=$what-${c#*:}
    t0=$(now)
    echo "== $what: ${c#*:}"
    truncate -s 64M "$W/$tag.img"
    case "$what" in
    resize)
        serve "$transport"
        guest resize --append "vblk.resize_grow=$((96 * MIB / 512)) vblk.resize_shrink=$((48 * MIB / 512))"
        await RESIZE-READY
        PHASE="vblk resize 96M --resize-file ($tag)"
        "$VBLK" resize --socket "$CTL" 96M --resize-file | sed 's/^/   host: /'
        await RESIZE-GROWN
        PHASE="vblk resize 48M ($tag)"
        "$VBLK" resize --socket "$CTL" 48M | sed 's/^/   host: /'
        guest_done
        "$VBLK" stats --socket "$CTL" --json >"$W/stats-$tag.json"
        stop
        PHASE="the host's checks ($tag)"
        size=$(stat -c %s "$W/$tag.img")
        [ "$size" = $((96 * MIB)) ] || die "the image is $size bytes, want $((96 * MIB)) (grown with --resize-file, the shrink left it)"
        check_pattern "$W/$tag.img" $((96 * MIB - 512)) 512
        check_pattern "$W/$tag.img" $((64 * MIB - 512)) 512
        python3 - "$W/stats-$tag.json" "$transport" <<'PY'
import json, sys
s, transport = json.load(open(sys.argv[1])), sys.argv[2]
live = s.get("live", {})
assert live.get("capacity") == 48 << 20, "vblk stats: capacity %r, want 48 MiB" % live.get("capacity")
assert live.get("generation") == 2, "vblk stats: generation %r, want 2 (two resizes)" % live.get("generation")
if transport == "vfio-user":
    n = s["device"]["config_interrupts"]
    assert n >= 2, "config_interrupts = %d, want >= 2" % n
    print("   host: vblk counters: capacity 48 MiB, generation 2, %d configuration interrupts" % n)
else:
    print("   host: vblk counters: capacity 48 MiB, generation 2")
PY
        echo "   host: the image is 96 MiB and holds the guest's last sectors (old and new)"
        ;;
    wce)
        serve "$transport"
        guest wce
        await WCE-WRITTEN
        "$VBLK" stats --socket "$CTL" --json >"$W/stats-$tag.json"
        PHASE="SIGKILL ($tag)"
        kill -KILL "$PID"
        wait "$PID" 2>/dev/null || true
        PID=""
        wt_dirty=$(dirty "$W/$tag.img" $((8192 * 512)) 65536)
        wb_dirty=$(dirty "$W/$tag.img" $((2048 * 512)) 65536)
        python3 - "$W/stats-$tag.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
fua = sum(q["fua_writes"] for q in s["queues"])
changes = s["device"]["cache_mode_changes"]
assert changes == 3, "cache_mode_changes = %d, want 3 (the guest's three switches)" % changes
assert fua >= 1, "no write-through write reached vblk as FUA"
assert s["live"]["writeback"] is False, "vblk is not in write-through mode"
print("   host: vblk counters: 3 cache-mode switches, %d FUA write(s), write-through now" % fua)
PY
        guest_done
        PHASE="the host's checks ($tag)"
        check_pattern "$W/$tag.img" $((2048 * 512)) 65536
        check_pattern "$W/$tag.img" $((8192 * 512)) 65536
        echo "   host: after SIGKILL both blocks are in the image; dirty pages in the host page cache: write-through block $wt_dirty, write-back block $wb_dirty"
        [ "$wt_dirty" = 0 ] || [ "$wt_dirty" = "?" ] || die "the write-through block has $wt_dirty dirty pages: it was not written durably"
        [ "$wt_dirty" = "?" ] && echo "   host: (no cachestat on this kernel: durability not checked from the page cache)"
        [ "$wb_dirty" = 0 ] && echo "   host: (the write-back block was written back already; the contrast is not shown this time)"
        ;;
    wce-reconnect)
        serve "$transport"
        guest wce-reconnect --reconnect
        await WCE-THROUGH
        PHASE="restart ($tag)"
        kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.pwrite(fd, b'vblk-restarted', 4096 * 512); os.fsync(fd)" "$W/$tag.img"
        serve "$transport"
        await WCE-WRITTEN
        PHASE="SIGKILL ($tag)"
        kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        wt_dirty=$(dirty "$W/$tag.img" $((8192 * 512)) 65536)
        guest_done
        PHASE="the host's checks ($tag)"
        check_pattern "$W/$tag.img" $((8192 * 512)) 65536
        grep -q "reconnected; its guest's cache mode is unknown" "$LOGF" || die "the restarted vblk did not switch to write-through"
        echo "   host: the restarted vblk went write-through (the guest's choice is not replayed by QEMU); after SIGKILL the block written after the restart has $wt_dirty dirty pages"
        [ "$wt_dirty" = 0 ] || [ "$wt_dirty" = "?" ] || die "the write after the restart has $wt_dirty dirty pages: it was not written durably"
        ;;
    esac
    echo "   $tag: $(since "$t0")"
done
echo "e2e-config: all passed in $(since "$t_all")"
