#!/usr/bin/env bash
# The vfio-user guest test: vblk emulates the whole virtio-blk PCI function;
# QEMU 11 (vfio-user-pci) attaches it, and an unmodified Linux guest writes
# through it in three modes:
#   modern  - modern virtio-pci registers, MSI-X
#   legacy  - virtio_pci force_legacy=1: the legacy I/O BAR (QUEUE_PFN, QUEUE_NOTIFY ...), MSI-X
#   intx    - pci=nomsi: modern registers, INTx and the ISR register
# Each mode: boot `write` (the pattern blocks, then fio with crc32c verify:
# direct libaio at iodepth 32 and buffered psync, random 4..64 KiB blocks),
# `vblk stats`, then partly-cache.py drops every other 16 KiB chunk of the
# image from the host page cache, and boot `verify` (a second client of the
# same daemon) re-reads the pattern and fio --verify_only re-checks
# everything fio wrote; the host checks the image byte for byte. Every boot
# ends with the guest's dmesg check (no I/O error lines). A mode written
# MODE:none runs the daemon with --cache none (default list: modern legacy
# intx modern:none). The guest's /proc/interrupts must show the expected interrupt kind (PCI-MSI or
# IO-APIC) and its negotiated features the expected interface (VERSION_1 set
# for modern, clear for legacy); vblk's counters (`vblk stats --json`) must
# show the expected register path and interrupt kind (skipped with a message
# if `vblk stats` fails).
# modern (defaults) also boots `readonly` on a --readonly daemon.
#
# Environment:
#   VBLK_VFIO_MODES="modern legacy intx modern:none"   the modes to run
#   VBLK_VFIO_FULL=1   a readonly boot in every mode, not just modern
#   VBLK_E2E_INJECT=corrupt|dmesg   as in e2e.sh: flip a byte of fio's region
#                      between the boots / plant a fake I/O error kernel line
#   VBLK=PATH          the vblk binary (default target/release/vblk)
#   VBLK_E2E_KEEP=1    keep the work directory even on success
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
VBLK=${VBLK:-$ROOT/target/release/vblk}
[ -x "$VBLK" ] || { echo "e2e-vfio-user: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
e2e_workdir vfio
PID="" LOGF="" PHASE="setup"
INJECT=${VBLK_E2E_INJECT:-}
cleanup() {
    local rc=$?
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    if [ $rc != 0 ]; then
        echo "e2e-vfio-user: FAILED during $PHASE" >&2
        [ -n "$LOGF" ] && { echo "e2e-vfio-user: vblk's log ($LOGF) ends with:" >&2; tail -n 20 "$LOGF" >&2; }
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
MODES=${VBLK_VFIO_MODES:-modern legacy intx modern:none}
t_all=$(now)

serve() { # MODE [vblk options]   ($tag names the files)
    local mode=$1; shift
    SOCK=$W/$tag.sock CTL=$W/$tag.ctl LOGF=$W/vblk-$tag.log
    rm -f "$SOCK"
    "$VBLK" serve --image "$W/$tag.img" --vfio-user "$SOCK" --num-queues 2 --serial "vblk-vfio-$mode" \
        --control "$CTL" "$@" >>"$LOGF" 2>&1 &
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
boot() { # MODE TEST [run-guest.sh args]
    local mode=$1 test=$2; shift 2
    PHASE="boot $test ($tag)"
    "$HERE/run-guest.sh" --transport vfio-user --mode "$mode" --socket "$SOCK" --serial "vblk-vfio-$mode" \
        --log "$W/guest-$tag-$test.log" --test "$test" "$@"
}

for entry in $MODES; do
    mode=${entry%%:*} cache=default
    [ "$entry" != "$mode" ] && cache=${entry#*:}
    case "$mode" in modern|legacy|intx) ;; *) echo "e2e-vfio-user: unknown mode $mode" >&2; exit 2 ;; esac
    case "$cache" in default|none) ;; *) echo "e2e-vfio-user: unknown cache variant $cache" >&2; exit 2 ;; esac
    tag=$mode opts=()
    [ "$cache" = none ] && { tag=$mode-nocache; opts=(--cache none); }
    t0=$(now)
    echo "== vfio-user, $mode, cache $cache"
    truncate -s 64M "$W/$tag.img"
    serve "$mode" "${opts[@]}"
    t=$(now)
    extra=(--with-fio)
    [ "$INJECT" = dmesg ] && extra+=(--append vblk.inject=dmesg)
    boot "$mode" write "${extra[@]}"
    echo "   boot write: $(since "$t")"
    if "$VBLK" stats --socket "$CTL" --json >"$W/stats-$tag.json" 2>"$W/stats-$tag.err"; then :; else
        echo "   (vblk stats failed: $(head -c 200 "$W/stats-$tag.err"); the register-path checks are skipped)"
        rm -f "$W/stats-$tag.json"
    fi
    PHASE="the host's page-cache setup ($tag)"
    python3 "$HERE/partly-cache.py" "$W/$tag.img" "$tag: before the verify boot"
    if [ "$INJECT" = corrupt ]; then
        python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); b = os.pread(fd, 1, 6 << 20 | 100); os.pwrite(fd, bytes([b[0] ^ 0xff]), 6 << 20 | 100)" "$W/$tag.img"
        echo "host: INJECTED: flipped the byte at $((6 << 20 | 100)) (fio's region) before the verify boot"
    fi
    t=$(now)
    boot "$mode" verify --with-fio
    echo "   boot verify (second client, same daemon, partly cached image): $(since "$t")"
    stop
    PHASE="the host's checks ($tag)"
    python3 "$HERE/check-image.py" "$W/$tag.img" "$tag"
    python3 - "$mode" "$W/guest-$tag-write.log" "$W/stats-$tag.json" <<'PY'
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
    if { [ "$mode" = modern ] || [ "${VBLK_VFIO_FULL:-0}" = 1 ]; } && [ "$cache" = default ]; then
        t=$(now)
        cp "$W/$tag.img" "$W/$tag-before.img"
        serve "$mode" --readonly
        boot "$mode" readonly
        stop
        cmp "$W/$tag.img" "$W/$tag-before.img" || { echo "e2e-vfio-user: $tag: the read-only image changed" >&2; exit 1; }
        echo "   boot readonly (--readonly daemon): $(since "$t"); image unchanged"
    fi
    echo "== vfio-user, $mode, cache $cache: PASS in $(since "$t0")"
done
echo "e2e (vfio-user: $MODES): PASS in $(since "$t_all")"
