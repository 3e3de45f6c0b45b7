#!/usr/bin/env bash
# Crash and reconnect (issue 8): a real Linux guest (QEMU 7.2, TCG,
# vhost-user-blk-pci with 2 queues on a chardev with reconnect=1) runs 4
# writers that write sequence-numbered 4 KiB blocks with O_DIRECT and an fsync
# each and log every acknowledged write on the serial console. Meanwhile the
# host kills the daemon with SIGKILL three times at random moments and starts
# it again on the same socket (same image, same options). Required:
#   * the guest sees no I/O error and no hang (its watchdog fails the test when
#     no write completes for 40 s) and reads back every acknowledged block;
#   * the image holds every block the console logged as acknowledged
#     (check-crash.py), and writes went on after every kill;
#   * QEMU's trace (vhost_user_write req:32) shows SET_INFLIGHT_FD after every
#     connection: QEMU keeps the inflight region, and the restarted daemon
#     resubmits what the dead one had not completed.
#
#   tests/guest/e2e-crash.sh
#
# Environment:
#   VBLK_E2E_DAEMON=vblk (default) | qsd   qsd (the host's qemu-storage-daemon)
#                   does not offer INFLIGHT_SHMFD: the inflight check is only
#                   reported for it, not required
#   VBLK=PATH       the vblk binary (default target/release/vblk)
#   VBLK_CRASH_OPTS extra `vblk serve` options (default: none, i.e. the defaults)
#   VBLK_CRASH_SECS=30    how long the guest writes (guest seconds)
#   VBLK_CRASH_KILLS=3    how many SIGKILLs
#   VBLK_CRASH_SEED=N     the seed of the kill moments (printed; default random)
#   VBLK_CRASH_REQUIRE_INFLIGHT=1|0   fail when QEMU did not use the inflight
#                   region (default 1 for vblk, 0 for qsd)
#   VBLK_E2E_KEEP=1 keep the work directory even on success
#   VBLK_CRASH_INJECT=lost|hang   show that the checks can fail: lost makes the
#                   guest zero one acknowledged block before its read-back;
#                   hang SIGSTOPs the daemon instead of the first kill (the
#                   guest's watchdog, shortened to 15 s, must report a hang)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
DAEMON=${VBLK_E2E_DAEMON:-vblk}
VBLK=${VBLK:-$ROOT/target/release/vblk}
SECS=${VBLK_CRASH_SECS:-30}
KILLS=${VBLK_CRASH_KILLS:-3}
SEED=${VBLK_CRASH_SEED:-$(( $(date +%s%N) % 32768 ))}
INJECT=${VBLK_CRASH_INJECT:-}
APPEND="vblk.crash_secs=$SECS vblk.crash_writers=4"
case "$INJECT" in
    "") ;;
    lost) APPEND="$APPEND vblk.inject=lost" ;;
    hang) APPEND="$APPEND vblk.crash_stall=15" ;;
    *) echo "e2e-crash: VBLK_CRASH_INJECT must be lost or hang" >&2; exit 2 ;;
esac
case "$DAEMON" in
    vblk) [ -x "$VBLK" ] || { echo "e2e-crash: $VBLK missing: run cargo build --release" >&2; exit 1; }
          REQUIRE=${VBLK_CRASH_REQUIRE_INFLIGHT:-1} ;;
    qsd) command -v qemu-storage-daemon >/dev/null || { echo "e2e-crash: no qemu-storage-daemon on the host" >&2; exit 1; }
         REQUIRE=${VBLK_CRASH_REQUIRE_INFLIGHT:-0} ;;
    *) echo "e2e-crash: VBLK_E2E_DAEMON must be vblk or qsd" >&2; exit 2 ;;
esac
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir crash
IMG=$W/disk.img SOCK=$W/vblk.sock GLOG=$W/guest-crash.log DLOG=$W/daemon.log
PID="" GPID="" PHASE="setup"
cleanup() {
    local rc=$?
    # run-guest.sh leads its own process group (setsid): QEMU goes with it.
    if [ -n "$GPID" ]; then kill -TERM -- "-$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null; fi
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        echo "e2e-crash ($DAEMON, seed $SEED): FAILED during $PHASE" >&2
        if [ -s "$GLOG" ]; then
            echo "----- the guest's last lines other than VBLK-ACK ($GLOG) -----" >&2
            grep -v "^VBLK-ACK" "$GLOG" | tail -n 15 >&2
        fi
        echo "----- $DAEMON's log ($DLOG) ends with -----" >&2
        grep -v -E "^\s*$" "$DLOG" 2>/dev/null | tail -n 15 >&2 || true
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STARTS=0
serve() {
    rm -f "$SOCK"
    STARTS=$((STARTS + 1))
    echo "--- start $STARTS $(date +%T.%N)" >>"$DLOG"
    if [ "$DAEMON" = vblk ]; then
        # shellcheck disable=SC2086
        RUST_LOG=${RUST_LOG:-debug} "$VBLK" serve --image "$IMG" --vhost-user "$SOCK" --num-queues 2 \
            ${VBLK_CRASH_OPTS:-} >>"$DLOG" 2>&1 &
    else
        qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$IMG" \
            --export "type=vhost-user-blk,id=e0,node-name=f,addr.type=unix,addr.path=$SOCK,writable=on,num-queues=2" \
            >>"$DLOG" 2>&1 &
    fi
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    echo "e2e-crash: $DAEMON did not start (start $STARTS)" >&2; exit 1
}
guest_running() { kill -0 "$GPID" 2>/dev/null; }

echo "== crash and reconnect over vhost-user, daemon: $DAEMON ${VBLK_CRASH_OPTS:-}, $KILLS SIGKILLs in ${SECS}s of 4 writers, seed $SEED"
RANDOM=$SEED
truncate -s 64M "$IMG"
t_all=$(now)
PHASE="the first daemon start"
serve
PHASE="the guest's boot"
setsid "$HERE/run-guest.sh" --transport vhost-user --socket "$SOCK" --test crash --reconnect --trace "$W/qemu-trace.log" \
    --log "$GLOG" --timeout $((SECS + 150)) --append "$APPEND" \
    >"$W/run-guest.out" 2>&1 &
GPID=$!
for _ in $(seq 1200); do
    grep -q "CRASH-GO" "$GLOG" 2>/dev/null && break
    guest_running || break
    sleep 0.1
done
grep -q "CRASH-GO" "$GLOG" 2>/dev/null || { cat "$W/run-guest.out" >&2; echo "e2e-crash: the guest never started its writers" >&2; exit 1; }
t_go=$(now)
echo "   guest writers started after $(since "$t_all")"
# Kill k falls at a random moment of the k-th of KILLS equal slots of the
# first SECS-4 seconds, at least 1.5 s after the previous restart.
slot_ms=$(( (SECS - 4) * 1000 / KILLS ))
: >"$W/kills.txt"
for k in $(seq "$KILLS"); do
    PHASE="kill $k"
    at_ms=$(( 1000 + (k - 1) * slot_ms + (RANDOM * 32768 + RANDOM) % (slot_ms - 1500) ))
    wait_s=$(awk -v a="$t_go" -v b="$EPOCHREALTIME" -v t="$at_ms" 'BEGIN { d = t / 1000 - (b - a); printf "%.3f", (d > 0) ? d : 0 }')
    sleep "$wait_s"
    guest_running || { echo "e2e-crash: the guest ended before kill $k" >&2; break; }
    if grep -q "CRASH-WRITERS-DONE" "$GLOG"; then
        echo "e2e-crash: the workload ended before kill $k (guest slower than ${SECS}s?)" >&2; exit 1
    fi
    lines=$(wc -l <"$GLOG") acks=$(grep -c "VBLK-ACK" "$GLOG" || true)
    if [ "$INJECT" = hang ]; then
        kill -STOP "$PID"
        echo "kill $k line $lines acks $acks at $(since "$t_go") (SIGSTOP, injected)" >>"$W/kills.txt"
        echo "   INJECTED: SIGSTOP instead of kill $k, after $acks acknowledged writes; the daemon stays stopped"
        while guest_running && ! grep -q "VBLK-TEST: FAIL" "$GLOG"; do sleep 0.5; done
        kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        break
    fi
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    echo "--- SIGKILL $k $(date +%T.%N)" >>"$DLOG"
    echo "kill $k line $lines acks $acks at $(since "$t_go")" >>"$W/kills.txt"
    echo "   SIGKILL $k at $(since "$t_go") into the workload, after $acks acknowledged writes; restarting $DAEMON"
    PHASE="the restart after kill $k"
    serve
done
PHASE="the rest of the workload and the guest's read-back"
grc=0
wait "$GPID" || grc=$?
GPID=""
cat "$W/run-guest.out"
if [ -n "$PID" ]; then kill -TERM "$PID"; wait "$PID" || true; PID=""; fi
PHASE="the host's checks"
hrc=0
req=()
[ "$REQUIRE" = 1 ] && req=(--require-inflight)
python3 "$HERE/check-crash.py" "$IMG" "$GLOG" "$W/kills.txt" "$W/qemu-trace.log" "${req[@]}" || hrc=$?
if [ "$DAEMON" = vblk ]; then
    n=$(grep -c -i "inflight" "$DLOG" || true)
    echo "host: vblk's log (RUST_LOG=${RUST_LOG:-debug}) mentions the inflight region in $n lines${n:+$( [ "$n" -gt 0 ] && echo ", e.g.: $(grep -i -m1 inflight "$DLOG")")}"
fi
if [ "$grc" != 0 ] || [ "$hrc" != 0 ]; then
    [ "$grc" != 0 ] && PHASE="the guest's part (see the guest verdict above)" || PHASE="the host's checks (see above)"
    exit 1
fi
echo "e2e-crash ($DAEMON): PASS in $(since "$t_all")"
