#!/usr/bin/env bash
# The vfio-user guest test: vblk emulates the whole virtio-blk PCI function;
# QEMU 11 (vfio-user-pci) attaches it, and an unmodified Linux guest writes
# through it in three modes:
#   modern  - modern virtio-pci registers, MSI-X
#   legacy  - virtio_pci force_legacy=1: the legacy I/O BAR (QUEUE_PFN, QUEUE_NOTIFY ...), MSI-X
#   intx    - pci=nomsi: modern registers, INTx and the ISR register
# Each mode: boot `write`, then the host checks the image byte for byte. The
# guest's /proc/interrupts must show the expected interrupt kind (PCI-MSI or
# IO-APIC) and its negotiated features the expected interface (VERSION_1 set
# for modern, clear for legacy); vblk's counters (`vblk stats --json`) must
# show the expected register path and interrupt kind (skipped with a message
# if `vblk stats` fails).
# modern also boots `verify` as a second client of the same daemon (the first
# client's disconnect was cleaned up) and `readonly` on a --readonly daemon.
#
# Environment:
#   VBLK_VFIO_MODES="modern legacy intx"   the modes to run
#   VBLK_VFIO_FULL=1   verify and readonly boots in every mode, not just modern
#   VBLK=PATH          the vblk binary (default target/release/vblk)
#   VBLK_E2E_KEEP=1    keep the work directory even on success
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VBLK=${VBLK:-$ROOT/target/release/vblk}
[ -x "$VBLK" ] || { echo "e2e-vfio-user: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
W=$(mktemp -d /tmp/vblk-vfio.XXXXXX)
PID="" LOGF=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        [ -n "$LOGF" ] && { echo "e2e-vfio-user: FAILED; vblk's log ($LOGF) ends with:" >&2; tail -n 20 "$LOGF" >&2; }
        echo "e2e-vfio-user: work directory kept: $W" >&2
    elif [ "${VBLK_E2E_KEEP:-0}" = 1 ]; then echo "e2e-vfio-user: work directory kept: $W"
    else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
MODES=${VBLK_VFIO_MODES:-modern legacy intx}
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
t_all=$(now)

serve() { # MODE [--readonly]
    local mode=$1; shift
    SOCK=$W/$mode.sock CTL=$W/$mode.ctl LOGF=$W/vblk-$mode.log
    rm -f "$SOCK"
    "$VBLK" serve --image "$W/$mode.img" --vfio-user "$SOCK" --num-queues 2 --serial "vblk-vfio-$mode" \
        --control "$CTL" "$@" 2>>"$LOGF" &
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    echo "e2e-vfio-user: vblk did not start" >&2; exit 1
}
stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" = 0 ] || { echo "e2e-vfio-user: vblk exited with $rc on SIGTERM" >&2; exit 1; }
}
boot() { # MODE TEST [LOG-SUFFIX]
    "$HERE/run-guest.sh" --transport vfio-user --mode "$1" --socket "$SOCK" --serial "vblk-vfio-$1" \
        --log "$W/guest-$1-$2${3:-}.log" --test "$2"
}

for mode in $MODES; do
    case "$mode" in modern|legacy|intx) ;; *) echo "e2e-vfio-user: unknown mode $mode" >&2; exit 2 ;; esac
    t0=$(now)
    echo "== vfio-user, $mode"
    truncate -s 64M "$W/$mode.img"
    serve "$mode"
    t=$(now)
    boot "$mode" write
    echo "   boot write: $(since "$t")"
    if "$VBLK" stats --socket "$CTL" --json >"$W/stats-$mode.json" 2>"$W/stats-$mode.err"; then :; else
        echo "   (vblk stats failed: $(head -c 200 "$W/stats-$mode.err"); the register-path checks are skipped)"
        rm -f "$W/stats-$mode.json"
    fi
    if [ "$mode" = modern ] || [ "${VBLK_VFIO_FULL:-0}" = 1 ]; then
        t=$(now)
        boot "$mode" verify
        echo "   boot verify (second client, same daemon): $(since "$t")"
    fi
    stop
    python3 "$HERE/check-image.py" "$W/$mode.img" "$mode"
    python3 - "$mode" "$W/guest-$mode-write.log" "$W/stats-$mode.json" <<'PY'
import json, os, re, sys
mode, log, stats_path = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
# Guest side: the virtio lines of /proc/interrupts and the negotiated features.
irq_lines = [l for l in log.splitlines() if re.match(r"\s*\d+:", l) and "virtio" in l]
def count(l):
    n = 0
    for f in l.split()[1:]:
        if not f.isdigit():
            break
        n += int(f)
    return n
kinds = {("msi" if "PCI-MSI" in l else "intx" if "IO-APIC" in l else "other") for l in irq_lines}
used = {("msi" if "PCI-MSI" in l else "intx" if "IO-APIC" in l else "other") for l in irq_lines if count(l) > 0}
total = sum(count(l) for l in irq_lines)
feat = re.search(r"^features \S+ ([01]{64})", log, re.M)
def need(cond, what):
    if not cond:
        sys.exit(f"{mode}: expected {what}; guest /proc/interrupts: {irq_lines}, features: {feat and feat.group(1)}")
need(irq_lines and total > 0, "virtio interrupts in the guest")
need(feat is not None, "the guest's virtio features line")
version_1 = feat.group(1)[32] == "1"
if mode == "modern":
    need(kinds == {"msi"} and version_1, "PCI-MSI interrupts only and VIRTIO_F_VERSION_1 (modern driver)")
elif mode == "legacy":
    need(kinds == {"msi"} and not version_1, "PCI-MSI interrupts and no VIRTIO_F_VERSION_1 (legacy driver)")
elif mode == "intx":
    need(kinds == {"intx"} and version_1, "IO-APIC (INTx) interrupts only and VIRTIO_F_VERSION_1")
print(f"guest: {mode}: {total} virtio interrupts, all {'PCI-MSI' if kinds == {'msi'} else 'IO-APIC'}; "
      f"{'modern (VERSION_1)' if version_1 else 'legacy (no VERSION_1)'} driver")
# Daemon side: vblk's counters, when `vblk stats` worked.
if not os.path.exists(stats_path):
    sys.exit(0)
q = json.load(open(stats_path))["queues"]
c = {k: sum(x.get(k, 0) for x in q) for k in ("notify_legacy", "notify_modern", "msix", "intx", "req_out", "req_flush", "req_get_id")}
def need2(cond, what):
    if not cond:
        sys.exit(f"{mode}: expected {what}; vblk counters {c}")
need2(c["req_out"] >= 4 and c["req_flush"] >= 1 and c["req_get_id"] >= 1, "writes, flushes and GET_ID to reach vblk")
if mode == "modern":
    need2(c["msix"] > 0 and c["notify_modern"] > 0 and c["notify_legacy"] == 0 and c["intx"] == 0,
          "modern notifies and MSI-X only")
elif mode == "legacy":
    # SeaBIOS probes the disk through the modern interface before Linux runs.
    need2(c["notify_legacy"] > 0 and c["msix"] > 0 and c["intx"] == 0 and c["notify_modern"] <= 2,
          "legacy QUEUE_NOTIFY kicks and MSI-X (at most 2 modern kicks, from the firmware)")
elif mode == "intx":
    need2(c["intx"] > 0 and c["msix"] == 0 and c["notify_modern"] > 0, "INTx and no MSI-X")
print(f"vblk: {mode}: legacy kicks {c['notify_legacy']}, modern kicks {c['notify_modern']}, "
      f"MSI-X {c['msix']}, INTx {c['intx']}")
PY
    if [ "$mode" = modern ] || [ "${VBLK_VFIO_FULL:-0}" = 1 ]; then
        t=$(now)
        cp "$W/$mode.img" "$W/$mode-before.img"
        serve "$mode" --readonly
        boot "$mode" readonly
        stop
        cmp "$W/$mode.img" "$W/$mode-before.img" || { echo "e2e-vfio-user: $mode: the read-only image changed" >&2; exit 1; }
        echo "   boot readonly (--readonly daemon): $(since "$t"); image unchanged"
    fi
    echo "== vfio-user, $mode: PASS in $(since "$t0")"
done
echo "e2e (vfio-user: $MODES): PASS in $(since "$t_all")"
