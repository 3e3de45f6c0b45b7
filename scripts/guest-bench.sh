#!/usr/bin/env bash
# Guest-side benchmark in the TCG test guest: 256 MiB sequential direct reads
# and writes (64 KiB) and 64 MiB of 4 KiB direct reads, through
#   vblk over vhost-user, qemu-storage-daemon over vhost-user, vblk over vfio-user;
# and vblk over vhost-user with packed virtqueues (QEMU packed=on) next to the
# split-ring row (each guest checks which layout it negotiated).
# VBLK_GBENCH_ONLY="vblk-vhost-user vblk-vhost-user-packed" runs those rows only.
# TCG makes absolute guest figures meaningless: read the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
./scripts/setup-guest-env.sh >/dev/null
cargo build --release --quiet
W=$(mktemp -d /tmp/vblk-gbench.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
RG=()
run() { # name transport command...   (run-guest.sh extra args in RG)
    local name=$1 transport=$2; shift 2
    if [ -n "${VBLK_GBENCH_ONLY:-}" ] && ! [[ " $VBLK_GBENCH_ONLY " == *" $name "* ]]; then return 0; fi
    rm -f "$W/s.sock"; truncate -s 512M "$W/disk.img"
    "$@" >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 200); do [ -S "$W/s.sock" ] && break; sleep 0.05; done
    tests/guest/run-guest.sh --transport "$transport" --socket "$W/s.sock" --test bench --with-fio --log "$W/$name.log" "${RG[@]}" >/dev/null
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    echo "$name $(grep -h "VBLK-TEST: BENCH" "$W/$name.log" | sed "s/.*BENCH //") $(grep -h "VBLK-TEST: FIO" "$W/$name.log" | sed "s/.*FIO //")"
}
{
run qsd-vhost-user vhost-user qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$W/disk.img,aio=io_uring" \
    --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$W/s.sock,writable=on,num-queues=2"
RG=(--split)
run vblk-vhost-user vhost-user "$ROOT/target/release/vblk" serve --image "$W/disk.img" --vhost-user "$W/s.sock" --num-queues 2 ${VBLK_GBENCH_ARGS:-}
RG=(--packed)
run vblk-vhost-user-packed vhost-user "$ROOT/target/release/vblk" serve --image "$W/disk.img" --vhost-user "$W/s.sock" --num-queues 2 ${VBLK_GBENCH_ARGS:-}
RG=()
run vblk-vfio-user vfio-user "$ROOT/target/release/vblk" serve --image "$W/disk.img" --vfio-user "$W/s.sock" --num-queues 2
} | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
data = {r[0]: {k: float(v) for k, v in (x.split("=") for x in r[1:])} for r in rows}
ref = data.get("qsd-vhost-user") or data.get("vblk-vhost-user", {})
keys = [k for k in ["seqread64k", "seqwrite64k", "read4k", "fio_randread_qd1", "fio_randread_qd32", "fio_randwrite_qd1", "fio_randwrite_qd32"]
        if any(k in d for d in data.values())]
def speed(k, v, r):
    if not v or not r:
        return "-"
    x = v / r if k.startswith("fio") else r / v
    return f"{x:.2f}x"
print("| daemon | " + " | ".join(keys) + " |")
print("|---" * (1 + len(keys)) + "|")
for name, d in data.items():
    print(f"| {name} | " + " | ".join(f"{d.get(k, 0):g} ({speed(k, d.get(k), ref.get(k))})" for k in keys) + " |")
print("dd columns: seconds (speed vs qsd); fio columns: IOPS (vs qsd)")
'
