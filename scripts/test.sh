#!/usr/bin/env bash
# README command 2: set up what is missing and run the whole test suite.
#   format check, clippy -D warnings, unit/property/integration tests (nextest),
#   vblk torture, real-guest tests (vhost-user under QEMU 7.2 with fio verify
#   on two cache settings, a crash-and-reconnect test, vfio-user under QEMU 11
#   in three modes, online resize and the write cache, packed virtqueues, live
#   migration, NBD exports), and a quick benchmark that fails only on a
#   collapse.
# Environment: VBLK_SKIP_GUEST=1 skips the guest tests, VBLK_SKIP_BENCH=1 the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

step "toolchain"
cargo --version
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo-nextest missing: installing it"
    cargo install --locked cargo-nextest
fi

step "format check"
cargo fmt --all -- --check

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "build (release)"
cargo build --release

step "NBD servers for the NBD backend's tests (qemu-nbd, nbdkit)"
"$ROOT/scripts/setup-nbd.sh"

step "unit, property and host integration tests"
VBLK_REQUIRE_NBD_SERVERS=1 cargo nextest run --workspace --no-fail-fast

step "vblk torture: hostile vhost-user messages and rings against vblk (must pass) and qemu-storage-daemon (for comparison, never fails)"
TW=$(mktemp -d /tmp/vblk-torture.XXXXXX)
# wait_sock SOCK PID: until SOCK answers (10 s), or PID exits.
wait_sock() {
    for _ in $(seq 500); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
"$ROOT/target/release/vblk" serve --image "$TW/vblk.img" --size 64M --vhost-user "$TW/vblk.sock" 2>"$TW/vblk.log" &
TPID=$!
torture_rc=0
if wait_sock "$TW/vblk.sock" "$TPID"; then
    echo "--- against vblk"
    "$ROOT/target/release/vblk" torture --vhost-user "$TW/vblk.sock" || torture_rc=$?
else
    echo "vblk serve did not start"; torture_rc=1
fi
kill "$TPID" 2>/dev/null || true
wait "$TPID" 2>/dev/null || true
if command -v qemu-storage-daemon >/dev/null; then
    truncate -s 64M "$TW/qsd.img"
    qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$TW/qsd.img" \
        --export "type=vhost-user-blk,id=e0,node-name=f,addr.type=unix,addr.path=$TW/qsd.sock,writable=on,num-queues=1" \
        >"$TW/qsd.log" 2>&1 &
    QPID=$!
    if wait_sock "$TW/qsd.sock" "$QPID"; then
        echo "--- against qemu-storage-daemon (for comparison; its failures do not fail the tests)"
        "$ROOT/target/release/vblk" torture --vhost-user "$TW/qsd.sock" --timeout-ms 1000 \
            || echo "(qemu-storage-daemon: failures reported above, not counted)"
    else
        echo "qemu-storage-daemon did not start (not counted)"
    fi
    kill -9 "$QPID" 2>/dev/null || true  # a wedged daemon ignores SIGTERM
    wait "$QPID" 2>/dev/null || true
else
    echo "no qemu-storage-daemon on this machine: comparison skipped"
fi
if [ "$torture_rc" != 0 ]; then
    echo "vblk torture failed against vblk (daemon log: $TW/vblk.log)"
    exit 1
fi
rm -rf "$TW"

if [ "${VBLK_SKIP_GUEST:-0}" != 1 ]; then
    step "guest environment (QEMU chroots, kernel)"
    "$ROOT/scripts/setup-guest-env.sh"
    step "real guest over vhost-user-blk (QEMU 7.2)"
    "$ROOT/tests/guest/e2e.sh"
    step "crash and reconnect: SIGKILL the vhost-user daemon 3 times under a writing guest (QEMU 7.2)"
    "$ROOT/tests/guest/e2e-crash.sh"
    if [ -x "$ROOT/tests/guest/e2e-vfio-user.sh" ]; then
        step "real guest over vfio-user (QEMU 11): modern/MSI-X, legacy, INTx"
        "$ROOT/tests/guest/e2e-vfio-user.sh"
    fi
    step "online resize (vhost-user; vfio-user modern/legacy/INTx) and the write cache (toggle, SIGKILL, durability)"
    "$ROOT/tests/guest/e2e-config.sh"
    step "packed virtqueues: vhost-user-blk-pci,packed=on (QEMU 7.2) with fio verify; vfio-user modern packed, and split with --no-packed-rings (QEMU 11)"
    "$ROOT/tests/guest/e2e-packed.sh"
    step "live migration between two vhost-user daemons on one image under a writing, reading guest (QEMU 7.2 and 11)"
    "$ROOT/tests/guest/e2e-migrate.sh"
    step "NBD: qcow2 via qemu-nbd over TCP (vhost-user), raw over UNIX (vfio-user), qemu-nbd restarted during a boot"
    "$ROOT/tests/guest/e2e-nbd.sh"
fi

if [ "${VBLK_SKIP_BENCH:-0}" != 1 ]; then
    step "quick benchmark (fails only if vblk collapses below half of qemu-storage-daemon)"
    "$ROOT/target/release/vblk" bench --quick --fail-on-collapse --out "$ROOT/target/bench"
fi

step "all tests passed in $(( $(date +%s) - start ))s"
