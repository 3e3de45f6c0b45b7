#!/bin/busybox sh
# /init of the vblk test guest. Runs the test named by vblk.test= on the
# kernel command line against /dev/vda, prints VBLK-TEST markers on the
# serial console, and powers off.
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

past_end() {
    # The block layer ends a read at the last sector: nothing past it.
    n=$(dd if=/dev/vda bs=512 skip="$SECTORS" count=1 iflag=direct 2>/dev/null | wc -c)
    [ "$n" = 0 ] || fail "read past the end returned $n bytes"
    dd if=/tmp/p of=/dev/vda bs=512 seek="$SECTORS" oflag=direct conv=fsync 2>/dev/null && fail "write past the end succeeded"
    return 0
}

case "$TEST" in
write)
    write_all
    verify_all
    past_end
    say "PASS write"
    ;;
verify)
    verify_all
    say "PASS verify"
    ;;
readonly)
    [ "$(cat /sys/block/vda/ro)" = 1 ] || fail "device is not read-only"
    verify_all
    dd if=/dev/zero of=/dev/vda bs=512 count=1 oflag=direct conv=fsync 2>/dev/null && fail "write to a read-only disk succeeded"
    verify_all
    say "PASS readonly"
    ;;
bench)
    # Relative guest-side figures only: under TCG absolute numbers mean little.
    up() { cut -d' ' -f1 /proc/uptime; }
    t0=$(up)
    dd if=/dev/vda of=/dev/null bs=65536 count=4096 iflag=direct 2>/dev/null || fail "bench read"
    t1=$(up)
    dd if=/dev/zero of=/dev/vda bs=65536 count=4096 oflag=direct conv=fsync 2>/dev/null || fail "bench write"
    t2=$(up)
    dd if=/dev/vda of=/dev/null bs=4096 count=16384 iflag=direct 2>/dev/null || fail "bench 4k read"
    t3=$(up)
    say "BENCH seqread64k=$(echo "$t1 $t0" | awk '{print $1-$2}') seqwrite64k=$(echo "$t2 $t1" | awk '{print $1-$2}') read4k=$(echo "$t3 $t2" | awk '{print $1-$2}')"
    if [ -x /usr/bin/fio ]; then
        # fio in the guest: 4 KiB random direct I/O, libaio, QD1 and QD32.
        res=""
        for rw in randread randwrite; do
            for qd in 1 32; do
                iops=$(LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /lib64/ld-linux-x86-64.so.2 /usr/bin/fio --name=g --filename=/dev/vda \
                    --ioengine=libaio --direct=1 --rw=$rw --bs=4k --iodepth=$qd --size=256M --time_based --runtime=4 \
                    --output-format=terse --terse-version=3 2>/dev/null |
                    awk -F';' -v rw=$rw '{ print (rw == "randread") ? $8 : $49 }')
                res="$res fio_${rw}_qd$qd=${iops:-0}"
            done
        done
        say "FIO$res"
    fi
    say "PASS bench"
    ;;
demo)
    echo "--- the guest sees:"
    dmesg | grep -i -E "virtio|vda" | tail -n 8
    echo "--- /dev/vda: $SECTORS sectors of 512 bytes ($((SECTORS / 2048)) MiB), serial '$(cat /sys/block/vda/serial)'"
    echo "hello from the guest, $(date)" | dd of=/dev/vda bs=512 conv=sync,fsync oflag=direct 2>/dev/null
    echo "--- wrote sector 0 and read it back: $(dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\0')"
    say "PASS demo"
    ;;
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
