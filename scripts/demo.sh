#!/usr/bin/env bash
# README command 1: set up what is missing, build, serve a throwaway image with
# vblk and boot a Linux guest (QEMU, TCG) on it; print what the guest saw.
#   DEMO_TRANSPORT=vfio-user ./scripts/demo.sh   shows the PCI-over-vfio-user device.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TRANSPORT=${DEMO_TRANSPORT:-vhost-user}
echo "== setting up QEMU, a guest kernel and busybox in ~/.cache/vblk (first run: a few minutes)"
./scripts/setup-guest-env.sh
echo "== building vblk"
cargo build --release --quiet
W=$(mktemp -d /tmp/vblk-demo.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
echo "== serving a throwaway 256 MiB image over $TRANSPORT"
RUST_LOG=${RUST_LOG:-info} ./target/release/vblk serve --image "$W/disk.img" --size 256M \
    "--$TRANSPORT" "$W/vblk.sock" --num-queues 2 --serial vblk-demo --control "$W/vblk.ctl" &
PID=$!
for _ in $(seq 100); do [ -S "$W/vblk.sock" ] && break; sleep 0.05; done
echo "== booting a guest on it"
tests/guest/run-guest.sh --transport "$TRANSPORT" --socket "$W/vblk.sock" --test demo --log "$W/guest.log" || true
echo "== what the guest printed:"
sed -n '/--- the guest sees/,/VBLK-TEST: DONE/p' "$W/guest.log"
echo "== vblk's counters (vblk stats):"
./target/release/vblk stats --socket "$W/vblk.ctl" | grep -v -E '^ +[a-z_]+( +0)+$'
echo "== the first sector of the image, read on the host:"
head -c 512 "$W/disk.img" | tr -d '\0'; echo
kill -TERM "$PID"; wait "$PID"; PID=""
echo "== vblk stopped cleanly"
