#!/usr/bin/env bash
# README command 1: set up what is missing, build, serve a throwaway image with
# vblk and boot a Linux guest (QEMU, TCG) on it; print what the guest saw.
#   ./scripts/demo.sh                            vhost-user-blk (QEMU 7.2)
#   DEMO_TRANSPORT=vfio-user ./scripts/demo.sh   the virtio-blk PCI function over vfio-user (QEMU 11)
set -euo pipefail
cd "$(dirname "$0")/.."
TRANSPORT=${DEMO_TRANSPORT:-vhost-user}
case "$TRANSPORT" in vhost-user|vfio-user) ;; *) echo "DEMO_TRANSPORT must be vhost-user or vfio-user" >&2; exit 2 ;; esac
echo "== setting up QEMU, a guest kernel and busybox in ${VBLK_CACHE:-~/.cache/vblk} (first run: a few minutes)"
./scripts/setup-guest-env.sh
echo "== building vblk (cargo build --release)"
cargo build --release --quiet
W=$(mktemp -d /tmp/vblk-demo.XXXXXX)
PID=""
cleanup() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "== serving a throwaway 256 MiB image over $TRANSPORT"
RUST_LOG=${RUST_LOG:-info} ./target/release/vblk serve --image "$W/disk.img" --size 256M \
    "--$TRANSPORT" "$W/vblk.sock" --num-queues 2 --serial vblk-demo --control "$W/vblk.ctl" &
PID=$!
for _ in $(seq 200); do [ -S "$W/vblk.sock" ] && break; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
[ -S "$W/vblk.sock" ] || { echo "vblk did not start" >&2; exit 1; }
echo "== booting a guest on it (vblk.test=demo)"
status=0
tests/guest/run-guest.sh --transport "$TRANSPORT" --socket "$W/vblk.sock" --test demo --log "$W/guest.log" || status=$?
echo "== what the guest printed:"
sed -n '/--- the guest sees/,/VBLK-TEST: DONE/p' "$W/guest.log"
echo "== vblk's counters (vblk stats; zero rows left out):"
./target/release/vblk stats --socket "$W/vblk.ctl" 2>&1 | grep -v -E '^ +[a-z_]+( +0)+$' || echo "(vblk stats is not available)"
echo "== the first sector of the image, read on the host:"
head -c 512 "$W/disk.img" | tr -d '\0'; echo
kill -TERM "$PID"
wait "$PID" || { echo "vblk exited with $? on SIGTERM" >&2; PID=""; exit 1; }
PID=""
echo "== vblk stopped cleanly"
[ "$status" = 0 ] || { echo "== the guest did not pass its demo (see above)" >&2; exit 1; }
