#!/bin/busybox sh
# /init of the vblk test guest. Runs the test named by vblk.test= on the
# kernel command line against /dev/vda, prints VBLK-TEST markers on the
# serial console, and powers off.
# Here: the mounts, the modules, the disk, the helpers the workloads share
# (arg, say, fail, the pattern blocks, dmesg_check, past_end) and the
# dispatch; the workloads themselves, by theme, are in /init.d
# (tests/guest/init.d/*.sh), sourced into this shell.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || mdev -s

arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
TEST=$(arg vblk.test)
SERIAL=$(arg vblk.serial)
LEGACY=$(arg vblk.force_legacy)
say() { echo "VBLK-TEST: $*"; }
fail() { say "FAIL $TEST: $*"; cat /proc/interrupts | grep -i virtio; poweroff -f; sleep 5; }

for m in $(cat /modules/order); do
    f=$(ls /modules/*-"$m".ko)
    # busybox insmod does not read /proc/cmdline: pass module parameters here.
    if [ "$m" = virtio_pci ] && [ "$LEGACY" = 1 ]; then
        insmod "$f" force_legacy=1 || fail "insmod $m force_legacy=1"
    else
        insmod "$f" || fail "insmod $m"
    fi
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; mdev -s 2>/dev/null; i=$((i + 1)); done
[ -b /dev/vda ] || fail "no /dev/vda appeared"

SECTORS=$(cat /sys/block/vda/size)
say "START $TEST"
say "disk vda sectors=$SECTORS ro=$(cat /sys/block/vda/ro) serial=$(cat /sys/block/vda/serial 2>/dev/null) queues=$(ls /sys/block/vda/mq | wc -l)"
[ -n "$SERIAL" ] && { [ "$(cat /sys/block/vda/serial)" = "$SERIAL" ] || fail "serial (GET_ID) is '$(cat /sys/block/vda/serial)', want '$SERIAL'"; }
# vblk.packed=1|0: the ring layout must be packed (VIRTIO_F_RING_PACKED, bit
# 34 of the negotiated features; the file lists bit 0 first) or split.
PACKED=$(arg vblk.packed)
if [ -n "$PACKED" ]; then
    bit=$(cut -c35 /sys/block/vda/device/features)
    [ "$bit" = "$PACKED" ] || fail "feature bit 34 (RING_PACKED) is '$bit', want '$PACKED' ($(cat /sys/block/vda/device/features))"
    say "ring layout: RING_PACKED=$bit"
fi

# The pattern at byte offset O: the line "vblk-O" repeated, cut to LEN bytes.
pattern() { yes "vblk-$1" | head -c "$2"; }
# Offsets (in 512-byte sectors) and lengths: first sector, a middle block,
# an unaligned one, and the very last sector.
LAST=$((SECTORS - 1))
MID=$((SECTORS / 2))
BLOCKS="0:4096 $MID:65536 $((MID + 1001)):1536 $LAST:512"

write_all() {
    for b in $BLOCKS; do
        s=${b%%:*}; len=${b##*:}
        pattern $((s * 512)) "$len" >/tmp/p
        dd if=/tmp/p of=/dev/vda bs=512 seek="$s" oflag=direct conv=fsync 2>/dev/null || fail "write at sector $s"
    done
    sync
    blockdev --flushbufs /dev/vda || fail "flush"
}

verify_all() {
    for b in $BLOCKS; do
        s=${b%%:*}; len=${b##*:}
        pattern $((s * 512)) "$len" >/tmp/p
        dd if=/dev/vda of=/tmp/r bs=512 skip="$s" count=$((len / 512)) iflag=direct 2>/dev/null || fail "read at sector $s"
        cmp /tmp/p /tmp/r || fail "data mismatch at sector $s"
    done
}

# The kernel log must hold no block-layer or virtio_blk error. vblk.inject=dmesg
# plants a fake one first, to show that this check can fail.
dmesg_check() {
    bad=$(dmesg | grep -E "I/O error|blk_update_request|Buffer I/O error|print_req_error|virtio_blk.*([Ee]rr|[Ff]ail)")
    if [ -n "$bad" ]; then
        echo "$bad" | sed 's/^/DMESG: /' | head -n 20
        fail "dmesg shows $(echo "$bad" | wc -l) I/O error line(s), first: $(echo "$bad" | head -n 1)"
    fi
    say "dmesg clean: no block-layer or virtio_blk errors"
}
[ "$(arg vblk.inject)" = dmesg ] && echo "vblk-test: injected fake error: I/O error, dev vda, sector 8 op 0x0:(READ) flags 0x0" >/dev/kmsg

past_end() {
    # The block layer ends a read at the last sector: nothing past it.
    n=$(dd if=/dev/vda bs=512 skip="$SECTORS" count=1 iflag=direct 2>/dev/null | wc -c)
    [ "$n" = 0 ] || fail "read past the end returned $n bytes"
    dd if=/tmp/p of=/dev/vda bs=512 seek="$SECTORS" oflag=direct conv=fsync 2>/dev/null && fail "write past the end succeeded"
    return 0
}

# The workloads, by theme: each /init.d file is a `case "$TEST"` over its
# tests, sourced (same shell, same variables and helpers).
case "$TEST" in
write|verify|ioerr|readonly) . /init.d/data.sh ;;
crash|migrate) . /init.d/writers.sh ;;
resize|wce|wce-reconnect) . /init.d/config.sh ;;
bench|demo) . /init.d/show.sh ;;
*)
    fail "unknown vblk.test '$TEST'"
    ;;
esac
echo "--- /proc/interrupts (virtio)"
grep -i virtio /proc/interrupts
# Bit 32 (VIRTIO_F_VERSION_1) tells a modern from a legacy (force_legacy=1) driver.
for f in /sys/bus/virtio/devices/virtio*/features; do [ -f "$f" ] && echo "features $f $(cat $f)"; done
say "DONE"
poweroff -f
