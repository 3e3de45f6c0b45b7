#!/usr/bin/env bash
# Live migration over vhost-user (issue 11), on one machine: two vblk daemons
# serve the same image file (shared storage); a source QEMU boots the guest
# on the first, a destination QEMU waits with -incoming on the second. While
# the guest runs its migrate workload (init.d/writers.sh `migrate`: 2 O_DIRECT
# writers that log every acknowledged block on the console, and a reader that
# fills the page cache by buffered device reads and checks what it holds), the
# host migrates it (QMP migrate to a unix socket, query-migrate until completed)
# and lets it finish on the destination. Required, for each QEMU:
#   * the migration completes (QEMU refuses to start it when the back end
#     cannot log dirty pages: VHOST_F_LOG_ALL + LOG_SHMFD);
#   * the guest prints PASS on the destination: no I/O error, the page cache
#     holds what the device read (pages the source daemon wrote during the
#     migration were logged and copied again), every acknowledged block
#     reads back;
#   * the image holds every block the console (source + destination)
#     acknowledged (check-crash.py) and the source daemon logged dirty pages.
# Shown to fail: with a vblk whose dirty log marks nothing (the log offered,
# taken and turned on, but `VuDirtyLog::mark` returning at once) the guest
# finds zeroes instead of the read data in its page cache on the
# destination, with both QEMUs ("the page cache holds wrong data after
# device reads"). The migration is throttled (32 MiB/s, 100 ms downtime) so
# that the guest really runs while its RAM is copied.
# A known fault of QEMU 7.2 (not vblk's): now and then the destination
# guest's kernel crashes after the migration (slab corruption, a NULL
# function pointer, list corruption; in 2 of 24 runs with vblk, and in 3 of 16
# with qemu-storage-daemon serving the same test in vblk's place, 2026-12-01/02;
# none in 10 QEMU 11 runs). A guest whose kernel crashes is stopped at
# once. On the bookworm leg, a kernel crash before any check of the test
# failed runs that leg once more (and says so); a second failure, any
# failed check, and any crash on the trixie leg fail the test.
#
#   tests/guest/e2e-migrate.sh            both QEMUs: bookworm 7.2, trixie 11
#   VBLK_MIGRATE_QEMU="trixie" tests/guest/e2e-migrate.sh    one of them
#
# Environment:
#   VBLK=PATH             the vblk binary (default target/release/vblk)
#   VBLK_MIGRATE_SECS=25  how long the guest's workload runs (guest seconds)
#   VBLK_MIGRATE_PACKED=1 packed virtqueues (vhost-user-blk-pci,packed=on)
#   VBLK_E2E_KEEP=1       keep the work directory even on success
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
VBLK=${VBLK:-$ROOT/target/release/vblk}
SECS=${VBLK_MIGRATE_SECS:-25}
QEMUS=${VBLK_MIGRATE_QEMU:-bookworm trixie}
RING=()
[ "${VBLK_MIGRATE_PACKED:-0}" = 1 ] && RING=(--packed)
[ -x "$VBLK" ] || { echo "e2e-migrate: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir migrate
IMG=$W/disk.img
PIDS=() GPIDS=() PHASE="setup"
stop_all() {
    local p
    # run-guest.sh leads its own process group (setsid): QEMU goes with it.
    for p in "${GPIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    GPIDS=() PIDS=()
}
cleanup() {
    local rc=$?
    stop_all
    if [ $rc != 0 ]; then
        echo "e2e-migrate: FAILED during $PHASE" >&2
        for f in "$W"/*/src-guest.log "$W"/*/dst-guest.log; do
            [ -s "$f" ] || continue
            echo "----- $f: last lines other than VBLK-ACK -----" >&2
            grep -v "^VBLK-ACK" "$f" | tail -n 12 >&2
        done
        for f in "$W"/*/daemon-*.log; do
            [ -s "$f" ] || continue
            echo "----- $f ends with -----" >&2
            tail -n 8 "$f" >&2
        done
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
qmp() { python3 "$HERE/qmp.py" "$@"; }

# A guest kernel crash report on the console.
GUEST_CRASH='BUG: |Oops: |general protection fault|Kernel panic'
# qemu72_guest_crash LOG: the guest kernel crashed and none of the test's
# own checks had failed before (no "VBLK-TEST: FAIL" line ahead of the
# crash report).
qemu72_guest_crash() {
    awk -v re="$GUEST_CRASH" '
        /VBLK-TEST: FAIL/ && !crash { failed = 1 }
        $0 ~ re { crash = 1 }
        END { exit !(crash && !failed) }' "$1"
}

# serve NAME: a daemon on $D/NAME.sock, the shared image, log $D/daemon-NAME.log
serve() {
    local sock=$D/$1.sock
    rm -f "$sock"
    RUST_LOG=${RUST_LOG:-info} "$VBLK" serve --image "$IMG" --vhost-user "$sock" --num-queues 2 \
        --cache writeback >"$D/daemon-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
    echo "e2e-migrate: the $1 daemon did not start" >&2; exit 1
}

wait_for() { # FILE PATTERN SECONDS PID
    local i
    for i in $(seq $(($3 * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

one() { # QEMU ATTEMPT
    local q=$1 attempt=${2:-1} t0 t_mig st out total dirty
    D=$W/$q
    mkdir -p "$D"
    t0=$EPOCHREALTIME
    echo "== live migration over vhost-user, QEMU from $q, ${SECS}s of 2 writers + a page-cache reader"
    truncate -s 0 "$IMG"
    truncate -s 64M "$IMG"
    PHASE="$q: starting the daemons"
    serve src
    serve dst
    PHASE="$q: the destination QEMU"
    setsid "$HERE/run-guest.sh" --transport vhost-user --qemu "$q" --socket "$D/dst.sock" --test migrate "${RING[@]}" \
        --qmp "$D/dst.qmp" --incoming "unix:$D/migrate.sock" --log "$D/dst-guest.log" --trace "$D/dst-trace.log" \
        --timeout $((SECS + 300)) --append "vblk.migrate_secs=$SECS init_on_alloc=0 init_on_free=0" >"$D/dst-run.out" 2>&1 &
    GPIDS+=($!)
    local dst=$!
    PHASE="$q: the source guest's boot"
    setsid "$HERE/run-guest.sh" --transport vhost-user --qemu "$q" --socket "$D/src.sock" --test migrate "${RING[@]}" \
        --qmp "$D/src.qmp" --log "$D/src-guest.log" \
        --timeout $((SECS + 300)) --append "vblk.migrate_secs=$SECS init_on_alloc=0 init_on_free=0" >"$D/src-run.out" 2>&1 &
    GPIDS+=($!)
    local src=$!
    wait_for "$D/src-guest.log" "MIGRATE-GO" 240 "$src" || { cat "$D/src-run.out" >&2; echo "e2e-migrate: the guest never started its workload" >&2; exit 1; }
    echo "   workload started after $(since "$t0"); migrating in 3s"
    sleep 3
    PHASE="$q: the migration"
    # A real precopy: the guest (and the daemon's writes into it) runs on
    # while RAM is copied at 32 MiB/s, and the switch-over happens only once
    # what is left fits in 100 ms. (With a fast link and a long downtime
    # allowed, QEMU stops the guest before it copies anything: nothing to
    # log, nothing tested.)
    qmp "$D/src.qmp" migrate-set-parameters '{"max-bandwidth": 33554432, "downtime-limit": 100}' >/dev/null
    t_mig=$EPOCHREALTIME
    qmp "$D/src.qmp" migrate "{\"uri\": \"unix:$D/migrate.sock\"}" >/dev/null
    st=""
    for _ in $(seq 600); do
        out=$(qmp "$D/src.qmp" query-migrate)
        st=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status", "?"))')
        case "$st" in completed|failed|cancelled) break ;; esac
        sleep 0.2
    done
    [ "$st" = completed ] || { echo "e2e-migrate: migration ended '$st': $out" >&2; exit 1; }
    echo "   migration completed in $(since "$t_mig"): $(echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); m=r.get("ram",{}); print("downtime %sms, %s RAM pages transferred, %s dirty-sync passes" % (r.get("downtime"), m.get("normal"), m.get("dirty-sync-count")))')"
    grep -q "MIGRATE-WORKLOAD-DONE" "$D/src-guest.log" && { echo "e2e-migrate: the workload ended before the migration did (raise VBLK_MIGRATE_SECS)" >&2; exit 1; }
    qmp "$D/src.qmp" quit >/dev/null 2>&1 || true
    PHASE="$q: the rest of the workload on the destination"
    local grc=0
    # A destination guest whose kernel crashed never prints a verdict:
    # stop it once the crash report is out instead of at the timeout.
    while kill -0 "$dst" 2>/dev/null; do
        if grep -qE "$GUEST_CRASH" "$D/dst-guest.log" 2>/dev/null; then
            sleep 2
            kill -TERM -- "-$dst" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    wait "$dst" || grc=$?
    cat "$D/dst-run.out"
    wait "$src" 2>/dev/null || true
    GPIDS=()
    stop_all
    PHASE="$q: the host's checks"
    if [ "$grc" != 0 ] && [ "$q" = bookworm ] && [ "$attempt" = 1 ] && qemu72_guest_crash "$D/dst-guest.log"; then
        echo "   the destination guest's kernel crashed before any check of the test failed:"
        grep -m 3 -E "$GUEST_CRASH|RIP:" "$D/dst-guest.log" | sed 's/^/     /'
        echo "   (QEMU 7.2 TCG, seen with qemu-storage-daemon in vblk's place too: see the top of this script); the bookworm leg runs once more"
        mv "$D" "$D.attempt1"
        RETRY=1
        return 0
    fi
    [ "$grc" = 0 ] || { echo "e2e-migrate: the guest did not pass on the destination" >&2; exit 1; }
    grep -q "MIGRATE-WORKLOAD-DONE" "$D/dst-guest.log" || { echo "e2e-migrate: the workload did not run on across the migration" >&2; exit 1; }
    : >"$D/kills.txt"
    cat "$D/src-guest.log" "$D/dst-guest.log" >"$D/console.log"
    python3 "$HERE/check-crash.py" "$IMG" "$D/console.log" "$D/kills.txt"
    total=$(grep -c "^VBLK-ACK" "$D/console.log" || true)
    dirty=$(grep -c "dirty logging on" "$D/daemon-src.log" || true)
    [ "$dirty" -gt 0 ] || { echo "e2e-migrate: the source daemon never turned dirty logging on" >&2; exit 1; }
    echo "   $total acknowledged writes ($(grep -c "^VBLK-ACK" "$D/src-guest.log" || true) on the source); source daemon: $(grep -m1 "dirty logging off" "$D/daemon-src.log" || echo "logging still on at the end")"
    # SET_CONFIG is vhost-user request 25: whether the destination QEMU
    # hands the guest's config (the write-cache byte) to its back end.
    echo "   destination QEMU: $(grep -c "vhost_user_write req:25 " "$D/dst-trace.log" || true) SET_CONFIG, $(grep -c "vhost_user_write req:6 " "$D/dst-trace.log" || true) SET_LOG_BASE sent to its daemon"
    echo "e2e-migrate ($q): PASS in $(since "$t0")"
}

t_all=$EPOCHREALTIME
for q in $QEMUS; do
    RETRY=0
    one "$q"
    [ "$RETRY" = 0 ] || one "$q" 2
done
echo "e2e-migrate: PASS ($QEMUS) in $(since "$t_all")"
