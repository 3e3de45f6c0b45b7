#!/usr/bin/env bash
# README command 2: set up what is missing and run the whole test suite.
#   format check, clippy -D warnings, unit/property/integration tests (nextest),
#   real-guest tests (vhost-user under QEMU 7.2 with fio verify on two cache
#   settings, a crash-and-reconnect test, vfio-user under QEMU 11 in three
#   modes), and a quick benchmark that fails only on a collapse.
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

step "unit, property and host integration tests"
cargo nextest run --workspace --no-fail-fast

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
fi

if [ "${VBLK_SKIP_BENCH:-0}" != 1 ]; then
    step "quick benchmark (fails only if vblk collapses below half of qemu-storage-daemon)"
    "$ROOT/target/release/vblk" bench --quick --fail-on-collapse --out "$ROOT/target/bench"
fi

step "all tests passed in $(( $(date +%s) - start ))s"
