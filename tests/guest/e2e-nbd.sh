#!/usr/bin/env bash
# NBD guest test: real guests write and re-read through vblk serving NBD
# exports of a qemu-nbd started here.
#   boot 1 (vhost-user, QEMU 7.2): a qcow2 overlay (backing file: a raw
#          image) served by qemu-nbd over TCP on 127.0.0.1; the guest's
#          `write` test with fio verify. Host: qemu-img check passes, the
#          backing file is untouched, the flattened overlay holds the
#          guest's pattern (check-image.py).
#   boot 2 (vfio-user, QEMU 11): a raw image served over a UNIX socket;
#          `write`, then `verify` in a second boot on the same daemon;
#          check-image.py on the server's file.
#   boot 3 (vhost-user): qemu-nbd is killed and restarted every 1.7 s
#          during the whole `write` boot with fio (outages of 0.7 s, well below
#          --nbd-reconnect-timeout 10): the guest sees no I/O error (its
#          dmesg check) and the image holds its pattern.
#   boot 4 (vhost-user): qemu-nbd stopped before the guest boots, vblk with
#          --nbd-reconnect-timeout 2: the guest's reads and writes fail
#          with I/O errors in bounded time (test `ioerr`); qemu-nbd comes
#          back and a second guest on the same daemon writes its pattern.
# Every boot but boot 4's first ends with the guest's dmesg check (no I/O error lines).
#
#   tests/guest/e2e-nbd.sh        (VBLK=PATH, VBLK_E2E_KEEP=1 as in e2e.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
VBLK=${VBLK:-$ROOT/target/release/vblk}
[ -x "$VBLK" ] || { echo "e2e-nbd: $VBLK missing: run cargo build --release" >&2; exit 1; }
"$ROOT/scripts/setup-guest-env.sh" >/dev/null
"$ROOT/scripts/setup-nbd.sh"
e2e_workdir nbd
PID="" NBD="" FLAP="" PHASE="setup"
cleanup() {
    local rc=$?
    [ -n "$FLAP" ] && { kill "$FLAP" 2>/dev/null; wait "$FLAP" 2>/dev/null; } || true
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; } || true
    [ -n "$NBD" ] && { kill "$NBD" 2>/dev/null; wait "$NBD" 2>/dev/null; } || true
    [ -s "$W/nbd.pid" ] && kill "$(cat "$W/nbd.pid")" 2>/dev/null || true
    if [ $rc != 0 ]; then
        echo "e2e-nbd: FAILED during $PHASE; vblk's log ends with:" >&2
        tail -n 20 "$W/vblk.log" >&2 2>/dev/null || true
    fi
    e2e_dispose $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_all=$(now)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

nbd_start() { # FORMAT IMAGE tcp|unix
    local addr=(-b 127.0.0.1 -p "$PORT")
    [ "$3" = unix ] && { rm -f "$W/nbd.sock"; addr=(-k "$W/nbd.sock"); }
    qemu-nbd --persistent --shared=8 -f "$1" -x disk --cache=writeback "${addr[@]}" "$2" >>"$W/qemu-nbd.log" 2>&1 &
    NBD=$!
    for _ in $(seq 200); do
        if [ "$3" = unix ]; then [ -S "$W/nbd.sock" ] && return 0
        else python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$PORT" 2>/dev/null && return 0; fi
        sleep 0.05
    done
    echo "e2e-nbd: qemu-nbd did not start" >&2; exit 1
}
nbd_stop() { kill "$NBD" 2>/dev/null; wait "$NBD" 2>/dev/null || true; NBD=""; }
serve() { # URI --vhost-user|--vfio-user [options]
    local uri=$1 tr=$2; shift 2
    SOCK=$W/vblk.sock
    rm -f "$SOCK"
    echo "--- serve $uri $tr $(date +%T)" >>"$W/vblk.log"
    RUST_LOG=${RUST_LOG:-warn} "$VBLK" serve --image "$uri" "$tr" "$SOCK" --num-queues 2 --serial vblk-nbd "$@" >>"$W/vblk.log" 2>&1 &
    PID=$!
    for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    echo "e2e-nbd: vblk did not start" >&2; exit 1
}
stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=""
    [ "$rc" = 0 ] || { echo "e2e-nbd: vblk exited with $rc on SIGTERM" >&2; exit 1; }
}
boot() { # TRANSPORT TEST [args]
    local tr=$1 t=$2; shift 2
    PHASE="boot $t over $tr"
    "$HERE/run-guest.sh" --transport "$tr" --socket "$SOCK" --serial vblk-nbd --log "$W/guest-$tr-$t.log" --test "$t" "$@"
}

echo "== boot 1: vhost-user, qcow2 overlay via qemu-nbd over TCP"
t=$(now)
truncate -s 64M "$W/base.raw"
python3 -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(16 << 20); f.write(b'backing-file-bytes' * 1000)" "$W/base.raw"
sha_base=$(sha256sum "$W/base.raw" | cut -d' ' -f1)
qemu-img create -q -f qcow2 -b "$W/base.raw" -F raw "$W/top.qcow2"
nbd_start qcow2 "$W/top.qcow2" tcp
serve "nbd://127.0.0.1:$PORT/disk" --vhost-user
boot vhost-user write --with-fio
stop
nbd_stop
PHASE="qcow2 checks"
qemu-img check -q "$W/top.qcow2"
[ "$(sha256sum "$W/base.raw" | cut -d' ' -f1)" = "$sha_base" ] || { echo "e2e-nbd: the backing file changed" >&2; exit 1; }
qemu-img convert -O raw "$W/top.qcow2" "$W/flat.raw"
python3 "$HERE/check-image.py" "$W/flat.raw" "qcow2 overlay"
echo "host: qemu-img check passed, backing file untouched, pattern in the overlay"
echo "== boot 1 done in $(since "$t")"

echo "== boot 2: vfio-user, raw image via qemu-nbd over a UNIX socket (write, then verify)"
t=$(now)
truncate -s 64M "$W/raw.img"
nbd_start raw "$W/raw.img" unix
serve "nbd+unix:///disk?socket=$W/nbd.sock" --vfio-user
boot vfio-user write
boot vfio-user verify
stop
nbd_stop
python3 "$HERE/check-image.py" "$W/raw.img" "raw over unix"
echo "== boot 2 done in $(since "$t")"

echo "== boot 3: vhost-user while qemu-nbd is killed and restarted every 1.7 s"
t=$(now)
rm -f "$W/raw.img"; truncate -s 64M "$W/raw.img"
nbd_start raw "$W/raw.img" tcp
serve "nbd://127.0.0.1:$PORT/disk" --vhost-user --nbd-reconnect-timeout 10
echo "$NBD" >"$W/nbd.pid"
NBD=""
(
    set +e
    n=0
    while sleep 1; do
        kill -KILL "$(cat "$W/nbd.pid")" 2>/dev/null
        sleep 0.7
        qemu-nbd --persistent --shared=8 -f raw -x disk --cache=writeback -b 127.0.0.1 -p "$PORT" "$W/raw.img" >>"$W/qemu-nbd.log" 2>&1 &
        echo $! >"$W/nbd.pid"
        n=$((n + 1)); echo "$n" >"$W/flaps"
    done
) &
FLAP=$!
boot vhost-user write --with-fio
kill "$FLAP"; wait "$FLAP" 2>/dev/null || true; FLAP=""
stop
kill "$(cat "$W/nbd.pid")" 2>/dev/null || true
python3 "$HERE/check-image.py" "$W/raw.img" "raw across restarts"
flaps=$(cat "$W/flaps" 2>/dev/null || echo 0)
[ "$flaps" -ge 1 ] || { echo "e2e-nbd: qemu-nbd was restarted only $flaps time(s) during the boot" >&2; exit 1; }
grep -q "reconnected" "$W/vblk.log" || { echo "e2e-nbd: vblk never reconnected" >&2; exit 1; }
echo "host: qemu-nbd restarted $flaps times during the boot; no guest I/O error; pattern intact"
echo "== boot 3 done in $(since "$t")"
echo "== boot 4: the server gone longer than --nbd-reconnect-timeout 2: guest I/O errors, no hang; then back"
t=$(now)
rm -f "$W/raw.img"; truncate -s 64M "$W/raw.img"
nbd_start raw "$W/raw.img" unix
# This boot once hung before the guest's first I/O reached vblk (CI,
# 2026-12-02; not reproduced since in 45 runs of this boot and 9 of the
# script): if it does again, vblk's debug log shows how far the rings got,
# and the guest's console shows its probe messages and, after 20 s, the
# stack of any task stuck in the kernel.
RUST_LOG=${RUST_LOG:-debug} serve "nbd+unix:///disk?socket=$W/nbd.sock" --vhost-user --nbd-reconnect-timeout 2
nbd_stop
boot vhost-user ioerr --timeout 120 --append "loglevel=6 sysctl.kernel.hung_task_timeout_secs=20"
grep -q "I/O error, dev vda" "$W/guest-vhost-user-ioerr.log" || { echo "e2e-nbd: the guest saw no I/O error" >&2; exit 1; }
PHASE="server back"
nbd_start raw "$W/raw.img" unix
boot vhost-user write
stop
nbd_stop
python3 "$HERE/check-image.py" "$W/raw.img" "raw after the outage"
echo "host: guest I/O errors while the server was gone; the same daemon served a writing guest once it was back and exited 0 on SIGTERM"
echo "== boot 4 done in $(since "$t")"
echo "e2e-nbd: PASS in $(since "$t_all")"
