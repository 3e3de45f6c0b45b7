#!/usr/bin/env bash
# The vfio-user guest test: vblk emulates the whole virtio-blk PCI function;
# QEMU 11 (vfio-user-pci) attaches it, and an unmodified Linux guest writes
# through it in three modes:
#   modern  - modern virtio-pci registers, MSI-X
#   legacy  - virtio_pci force_legacy=1: the legacy I/O BAR (QUEUE_PFN, QUEUE_NOTIFY ...)
#   intx    - pci=nomsi: INTx and the ISR register
# Each mode: the host checks the bytes, and both the guest's /proc/interrupts
# and vblk's counters must show the expected register path and interrupt kind.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VBLK=${VBLK:-$ROOT/target/release/vblk}
[ -x "$VBLK" ] || { echo "e2e-vfio-user: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
W=$(mktemp -d /tmp/vblk-vfio.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
MODES=${VBLK_VFIO_MODES:-modern legacy intx}
t_all=$(date +%s)

for mode in $MODES; do
    t0=$(date +%s)
    echo "== vfio-user, $mode"
    IMG=$W/$mode.img SOCK=$W/$mode.sock CTL=$W/$mode.ctl SERIAL=vblk-vfio-$mode
    "$VBLK" serve --image "$IMG" --size 64M --vfio-user "$SOCK" --num-queues 2 --serial "$SERIAL" --control "$CTL" 2>>"$W/vblk-$mode.log" &
    PID=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
    [ -S "$SOCK" ] || { echo "vblk did not start" >&2; cat "$W/vblk-$mode.log" >&2; exit 1; }
    "$HERE/run-guest.sh" --transport vfio-user --mode "$mode" --socket "$SOCK" --serial "$SERIAL" \
        --log "$W/guest-$mode.log" --test write
    "$VBLK" stats --socket "$CTL" --json >"$W/stats-$mode.json"
    if [ "$mode" = modern ]; then
        # A second client on the same daemon: the first one's disconnect was
        # cleaned up, and the data is still there.
        "$HERE/run-guest.sh" --transport vfio-user --mode "$mode" --socket "$SOCK" --serial "$SERIAL" \
            --log "$W/guest-$mode-verify.log" --test verify
    fi
    kill -TERM "$PID"; wait "$PID" || { echo "vblk exited with $? on SIGTERM" >&2; exit 1; }
    PID=""
    python3 - "$mode" "$IMG" "$W/stats-$mode.json" "$W/guest-$mode.log" <<'PY'
import json, re, sys
mode, img, stats, log = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), open(sys.argv[4]).read()
data = open(img, "rb").read()
sectors = len(data) // 512
mid = sectors // 2
for s, n in [(0, 4096), (mid, 65536), (mid + 1001, 1536), (sectors - 1, 512)]:
    off = s * 512
    want = (("vblk-%d\n" % off).encode() * (n // 6 + 2))[:n]
    if data[off:off + n] != want:
        sys.exit(f"{mode}: image bytes at sector {s} differ from the guest's pattern")
irq_lines = [l for l in log.splitlines() if re.match(r"\s*\d+:", l) and "virtio" in l]
guest_kinds = {("msi" if "PCI-MSI" in l else "intx" if "IO-APIC" in l else "other") for l in irq_lines}
guest_count = sum(sum(int(x) for x in l.split()[1:3]) for l in irq_lines)
q = stats["queues"]
tot = lambda k: sum(x[k] for x in q)
c = {k: tot(k) for k in ("notify_legacy", "notify_modern", "msix", "intx", "req_out", "req_flush", "req_get_id")}
def need(cond, what):
    if not cond:
        sys.exit(f"{mode}: expected {what}; guest interrupts {irq_lines}, vblk counters {c}")
need(c["req_out"] >= 4 and c["req_flush"] >= 1 and c["req_get_id"] >= 1, "writes, flushes and GET_ID to reach vblk")
if mode == "modern":
    need(guest_kinds == {"msi"}, "PCI-MSI interrupts only in the guest")
    need(c["msix"] > 0 and c["notify_modern"] > 0 and c["notify_legacy"] == 0, "modern notifies and MSI-X")
elif mode == "legacy":
    need(guest_kinds == {"msi"}, "PCI-MSI interrupts in the guest")
    need(c["notify_legacy"] > 0 and c["msix"] > 0, "legacy QUEUE_NOTIFY kicks and MSI-X")
    # The firmware (SeaBIOS) may probe the disk through the modern interface once.
    need(c["notify_modern"] <= 2, "no modern kicks from the Linux driver")
elif mode == "intx":
    need(guest_kinds == {"intx"}, "IO-APIC (INTx) interrupts only in the guest")
    need(c["intx"] > 0 and c["msix"] == 0, "INTx and no MSI-X")
print(f"host: {mode}: bytes verified; guest saw {guest_count} {'/'.join(sorted(guest_kinds))} interrupts; "
      f"vblk: legacy kicks {c['notify_legacy']}, modern kicks {c['notify_modern']}, MSI-X {c['msix']}, INTx {c['intx']}")
PY
    echo "== vfio-user, $mode: PASS in $(( $(date +%s) - t0 ))s"
done
echo "e2e (vfio-user: $MODES): PASS in $(( $(date +%s) - t_all ))s"
