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

# fio (from the bookworm chroot, --with-fio) through its own loader.
fio() { LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /lib64/ld-linux-x86-64.so.2 /usr/bin/fio "$@"; }
# fio's regions, clear of the pattern blocks (0..4 KiB, the middle, the end of
# a >= 64 MiB disk): two direct libaio jobs of 12 MiB each from 1 MiB
# (offset_increment gives each job its own region) and a buffered psync job of
# 6 MiB at 25 MiB. Random block sizes 4..64 KiB, crc32c verify headers; the
# same arguments replay the same offsets and sizes (randrepeat) for
# --verify_only after the reboot.
FIO_DIRECT="--name=direct --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k --iodepth=32 --numjobs=2 --offset=1M --size=12M --offset_increment=12M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 --group_reporting"
FIO_BUFFERED="--name=buffered --filename=/dev/vda --ioengine=psync --direct=0 --rw=randwrite --bsrange=4k-32k --offset=25M --size=6M --end_fsync=1 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1"
# run_fio LABEL ARGS...: fails the test (with fio's last lines) unless fio
# exits 0 and reports no verify or I/O error.
run_fio() {
    label=$1; shift
    [ -x /usr/bin/fio ] || fail "no fio in the initramfs (run-guest.sh --with-fio)"
    [ "$SECTORS" -ge 131072 ] || fail "fio regions need a disk of at least 64 MiB, this one has $SECTORS sectors"
    up0=$(cut -d' ' -f1 /proc/uptime)
    fio "$@" >/tmp/fio.out 2>&1
    rc=$?
    if [ $rc != 0 ] || grep -q -i -E "verify: bad|bad magic|crc32c: verify failed|io_u error|err= *[1-9]" /tmp/fio.out; then
        # The verify/error lines first (fio prints them before its long summary).
        grep -i -E "verify|crc|bad|error|err=" /tmp/fio.out | head -n 12 | sed 's/^/FIO: /'
        echo "FIO: ..."
        grep -E "issued rwts|READ:|WRITE:" /tmp/fio.out | sed 's/^/FIO: /'
        fail "fio $label failed (exit $rc)"
    fi
    say "fio $label ok in $(echo "$(cut -d' ' -f1 /proc/uptime) $up0" | awk '{ printf "%.1f", $1 - $2 }')s: $(grep -o -E '(READ|WRITE): bw=[^,]*' /tmp/fio.out | tr '\n' ' ')"
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

case "$TEST" in
write)
    write_all
    verify_all
    past_end
    if [ -x /usr/bin/fio ]; then
        run_fio "direct randwrite+verify" $FIO_DIRECT
        run_fio "buffered randwrite+verify" $FIO_BUFFERED
        verify_all
    fi
    dmesg_check
    say "PASS write"
    ;;
verify)
    verify_all
    if [ -x /usr/bin/fio ]; then
        run_fio "direct verify_only" $FIO_DIRECT --verify_only=1
        run_fio "buffered verify_only" $FIO_BUFFERED --verify_only=1
    fi
    dmesg_check
    say "PASS verify"
    ;;
ioerr)
    # The storage behind the device is gone for longer than the daemon waits
    # for it (NBD server down past --nbd-reconnect-timeout): reads and writes
    # fail with an I/O error in bounded time, no hang.
    t0=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/vda of=/dev/null bs=4096 skip=100 count=1 iflag=direct 2>/dev/null && fail "a read succeeded"
    dd if=/dev/zero of=/dev/vda bs=4096 seek=100 count=1 oflag=direct 2>/dev/null && fail "a write succeeded"
    t1=$(cut -d' ' -f1 /proc/uptime)
    dmesg | grep -q "I/O error, dev vda" || fail "no 'I/O error, dev vda' in dmesg"
    say "read and write failed in $(echo "$t1 $t0" | awk '{ printf "%.1f", $1 - $2 }')s: $(dmesg | grep "I/O error, dev vda" | tail -n 1 | sed 's/^\[[^]]*\] //')"
    say "PASS ioerr"
    ;;
readonly)
    [ "$(cat /sys/block/vda/ro)" = 1 ] || fail "device is not read-only"
    verify_all
    dd if=/dev/zero of=/dev/vda bs=512 count=1 oflag=direct conv=fsync 2>/dev/null && fail "write to a read-only disk succeeded"
    verify_all
    dmesg_check
    say "PASS readonly"
    ;;
crash)
    # Several writers, each in its own 8 MiB region (writer w from byte
    # (w + 1) * 8 MiB), write sequence-numbered 4 KiB blocks with O_DIRECT and
    # an fsync each (dd oflag=direct conv=fsync), in order, for
    # vblk.crash_secs seconds; after each acknowledged write the writer prints
    # "VBLK-ACK w seq" on the console - the durable record, which survives the
    # daemon being killed. The host kills and restarts the daemon meanwhile.
    # Then every acknowledged block is read back and compared here; the host
    # checks the image against the console's ACK lines.
    NW=$(arg vblk.crash_writers); NW=${NW:-4}
    SECS=$(arg vblk.crash_secs); SECS=${SECS:-30}
    STALL=$(arg vblk.crash_stall); STALL=${STALL:-40}
    RB=2048   # blocks per writer region
    [ "$SECTORS" -ge $(( (NW + 1) * RB * 8 )) ] || fail "$NW writer regions need $(( (NW + 1) * RB * 8 )) sectors, the disk has $SECTORS"
    # crash_blocks W FIRST COUNT: the expected content of writer W's blocks
    # FIRST .. FIRST+COUNT-1: 64 lines "vblk-crash w=W seq=N" padded to 64 bytes.
    crash_blocks() {
        awk -v w="$1" -v a="$2" -v c="$3" 'BEGIN { for (n = a; n < a + c; n++) { l = sprintf("%-63s", "vblk-crash w=" w " seq=" n); for (i = 0; i < 64; i++) print l } }'
    }
    writer() {
        w=$1 end=$2 n=0 base=$(( ($1 + 1) * RB ))
        while [ $n -lt $RB ]; do
            read -r up _ </proc/uptime
            [ "${up%%.*}" -ge "$end" ] && break
            crash_blocks $w $n 1 >/tmp/w$w.blk
            if dd if=/tmp/w$w.blk of=/dev/vda bs=4096 seek=$((base + n)) oflag=direct conv=fsync 2>/tmp/w$w.err; then
                echo "VBLK-ACK $w $n"
            else
                echo "VBLK-WRITE-ERROR writer $w seq $n at uptime $up: $(tr '\n' ' ' </tmp/w$w.err)"
                echo "$n" >/tmp/w$w.failed
                break
            fi
            n=$((n + 1))
            echo "$n" >/tmp/w$w.n
        done
        echo "$n" >/tmp/w$w.done
    }
    read -r up _ </proc/uptime
    END=$(( ${up%%.*} + SECS ))
    say "CRASH-GO $NW writers for ${SECS}s"
    w=0
    while [ $w -lt $NW ]; do echo 0 >/tmp/w$w.n; writer $w $END & w=$((w + 1)); done
    # Watchdog: a writer whose block never completes is a hang.
    last="" still=0
    while :; do
        done_n=0 prog=""
        w=0
        while [ $w -lt $NW ]; do
            [ -f /tmp/w$w.done ] && done_n=$((done_n + 1))
            prog="$prog $(cat /tmp/w$w.n)"
            w=$((w + 1))
        done
        [ $done_n = $NW ] && break
        if [ "$prog" = "$last" ]; then still=$((still + 1)); else still=0; last=$prog; fi
        if [ $still -ge $STALL ]; then
            dmesg | grep -E "I/O error|virtio_blk|vda" | tail -n 10 | sed "s/^/DMESG: /"
            fail "hang: no write completed for ${STALL}s (blocks acknowledged per writer:$prog)"
        fi
        sleep 1
    done
    say "CRASH-WRITERS-DONE"
    wait
    w=0
    while [ $w -lt $NW ]; do
        [ -f /tmp/w$w.failed ] && fail "writer $w: the write of seq $(cat /tmp/w$w.failed) failed: $(tr '\n' ' ' </tmp/w$w.err)"
        w=$((w + 1))
    done
    if [ "$(arg vblk.inject)" = lost ]; then
        # Show that the read-back can fail: lose an acknowledged block.
        dd if=/dev/zero of=/dev/vda bs=4096 seek=$(( 2 * RB + 5 )) count=1 oflag=direct conv=fsync 2>/dev/null
        say "INJECTED: zeroed writer 1's acknowledged block seq 5"
    fi
    # Every acknowledged block, read back with O_DIRECT.
    total=0 w=0
    while [ $w -lt $NW ]; do
        n=$(cat /tmp/w$w.done)
        [ "$n" -gt 0 ] || fail "writer $w: no write was acknowledged"
        crash_blocks $w 0 "$n" >/tmp/e
        dd if=/dev/vda of=/tmp/r bs=4096 skip=$(( (w + 1) * RB )) count="$n" iflag=direct 2>/dev/null || fail "writer $w: reading back $n blocks failed"
        if ! diff=$(cmp /tmp/e /tmp/r 2>&1); then
            at=$(echo "$diff" | sed -n 's/.*char \([0-9]*\).*/\1/p')
            fail "writer $w: acknowledged block seq $(( (${at:-1} - 1) / 4096 )) reads back wrong ($diff): $(dd if=/tmp/r bs=4096 skip=$(( (${at:-1} - 1) / 4096 )) count=1 2>/dev/null | head -c 63)"
        fi
        total=$((total + n))
        w=$((w + 1))
    done
    say "crash: $total acknowledged blocks from $NW writers read back intact"
    dmesg_check
    say "PASS crash"
    ;;
migrate)
    # Live migration (tests/guest/e2e-migrate.sh): the host migrates this
    # guest to another QEMU and another vblk (same image) while it runs:
    # * 2 writers write sequence-numbered 4 KiB blocks (the crash test's
    #   format: writer w's block n at 4 KiB block (w + 1) * 2048 + n) with
    #   O_DIRECT and an fsync each, and print "VBLK-ACK w n" when acknowledged;
    # * a reader reads a 16 MiB region with buffered I/O, 128 KiB every
    #   0.1 s, so that the device writes it into fresh page-cache pages all
    #   through the migration; at the end (on the destination) the page
    #   cache must still hold exactly the region's pattern: a page the
    #   device wrote on the source after the migration had copied it, and
    #   did not log, arrives stale. (The host boots the guest with
    #   init_on_alloc=0: the kernel does not zero, that is write, the pages
    #   itself before the device fills them.)
    # For vblk.migrate_secs guest seconds; then every acknowledged block is
    # read back with O_DIRECT.
    NW=2 RB=2048
    SECS=$(arg vblk.migrate_secs); SECS=${SECS:-30}
    # The reader's region: 4 KiB blocks 8192.. (16 MiB), 32 blocks a chunk.
    RSTART=8192 RCOUNT=4096 RCHUNK=32
    [ "$SECTORS" -ge $(( (RSTART + RCOUNT) * 8 )) ] || fail "the disk needs $(( (RSTART + RCOUNT) * 8 )) sectors, it has $SECTORS"
    mig_blocks() {
        awk -v w="$1" -v a="$2" -v c="$3" 'BEGIN { for (n = a; n < a + c; n++) { l = sprintf("%-63s", "vblk-crash w=" w " seq=" n); for (i = 0; i < 64; i++) print l } }'
    }
    # The last close of a block device drops its page cache (kill_bdev):
    # hold /dev/vda open until the check.
    exec 3</dev/vda
    mig_blocks 9 0 $RCOUNT >/tmp/rexp
    [ "$(wc -c </tmp/rexp)" = $((RCOUNT * 4096)) ] || fail "generating the reader's pattern"
    dd if=/tmp/rexp of=/dev/vda bs=65536 seek=$((RSTART / 16)) oflag=direct conv=fsync 2>/dev/null || fail "writing the reader's region"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    mig_writer() {
        w=$1 end=$2 n=0 base=$(( ($1 + 1) * RB ))
        while [ $n -lt $RB ]; do
            read -r up _ </proc/uptime
            [ "${up%%.*}" -ge "$end" ] && break
            mig_blocks $w $n 1 >/tmp/w$w.blk
            if dd if=/tmp/w$w.blk of=/dev/vda bs=4096 seek=$((base + n)) oflag=direct conv=fsync 2>/tmp/w$w.err; then
                echo "VBLK-ACK $w $n"
            else
                echo "VBLK-WRITE-ERROR writer $w seq $n: $(tr '\n' ' ' </tmp/w$w.err)"
                echo "$n" >/tmp/w$w.failed
                break
            fi
            n=$((n + 1))
        done
        echo "$n" >/tmp/w$w.done
    }
    mig_reader() {
        i=0
        while [ $i -lt $((RCOUNT / RCHUNK)) ]; do
            dd if=/dev/vda of=/dev/null bs=4096 skip=$((RSTART + i * RCHUNK)) count=$RCHUNK 2>/dev/null || { echo "reading chunk $i failed" >/tmp/r.failed; break; }
            i=$((i + 1))
            sleep 0.1
        done
        echo "$i" >/tmp/r.done
    }
    read -r up _ </proc/uptime
    END=$(( ${up%%.*} + SECS ))
    say "MIGRATE-GO $NW writers and a reader for ${SECS}s"
    w=0
    while [ $w -lt $NW ]; do mig_writer $w $END & w=$((w + 1)); done
    mig_reader $END &
    wait
    say "MIGRATE-WORKLOAD-DONE reader chunks $(cat /tmp/r.done)"
    [ -f /tmp/r.failed ] && fail "the reader: $(cat /tmp/r.failed)"
    # What the page cache holds now (buffered, no drop: what the device
    # wrote before, on either side of the migration).
    dd if=/dev/vda of=/tmp/r bs=65536 skip=$((RSTART / 16)) count=$((RCOUNT / 16)) 2>/dev/null || fail "reading the reader's region from the page cache"
    if ! diff=$(cmp /tmp/rexp /tmp/r 2>&1); then
        at=$(echo "$diff" | sed -n 's/.*char \([0-9]*\).*/\1/p')
        fail "the page cache holds wrong data after device reads ($diff): block $(( (${at:-1} - 1) / 4096 )) of the reader's region reads as (non-printable bytes as .) '$(dd if=/dev/vda bs=4096 skip=$(( RSTART + (${at:-1} - 1) / 4096 )) count=1 2>/dev/null | head -c 40 | tr -c '[:print:]' '.')'"
    fi
    exec 3<&-
    total=0 w=0
    while [ $w -lt $NW ]; do
        [ -f /tmp/w$w.failed ] && fail "writer $w: the write of seq $(cat /tmp/w$w.failed) failed: $(tr '\n' ' ' </tmp/w$w.err)"
        n=$(cat /tmp/w$w.done)
        [ "$n" -gt 0 ] || fail "writer $w: no write was acknowledged"
        mig_blocks $w 0 "$n" >/tmp/e
        dd if=/dev/vda of=/tmp/r bs=4096 skip=$(( (w + 1) * RB )) count="$n" iflag=direct 2>/dev/null || fail "writer $w: reading back $n blocks failed"
        cmp /tmp/e /tmp/r >/dev/null 2>&1 || fail "writer $w: acknowledged blocks read back wrong: $(cmp /tmp/e /tmp/r 2>&1)"
        total=$((total + n))
        w=$((w + 1))
    done
    # The reader's region once more, with O_DIRECT (the disk, not the cache).
    dd if=/dev/vda of=/tmp/r bs=65536 skip=$((RSTART / 16)) count=$((RCOUNT / 16)) iflag=direct 2>/dev/null || fail "reading the reader's region"
    cmp /tmp/rexp /tmp/r >/dev/null 2>&1 || fail "the reader's region is wrong on disk"
    say "migrate: $total acknowledged blocks from $NW writers read back intact; the page cache holds the $(( $(cat /tmp/r.done) * RCHUNK / 256 )) MiB the device read"
    dmesg_check
    say "PASS migrate"
    ;;
resize)
    # Online resize (tests/guest/e2e-config.sh drives the host side): the
    # host grows the disk to vblk.resize_grow sectors after RESIZE-READY,
    # then shrinks it to vblk.resize_shrink after RESIZE-GROWN. The guest
    # must see each new size in /sys/block/vda/size without a reboot, and
    # "capacity change" in dmesg; I/O at the new end works after the grow,
    # nothing passes the end after the shrink.
    GROW=$(arg vblk.resize_grow); SHRINK=$(arg vblk.resize_shrink)
    [ -n "$GROW" ] && [ -n "$SHRINK" ] || fail "vblk.resize_grow / vblk.resize_shrink missing"
    # wait_size N: until /sys/block/vda/size is N (60 s).
    wait_size() {
        i=0
        while [ "$(cat /sys/block/vda/size)" != "$1" ]; do
            [ $i -ge 600 ] && fail "size still $(cat /sys/block/vda/size) sectors after 60 s, want $1"
            sleep 0.1; i=$((i + 1))
        done
    }
    changes() { dmesg | grep -c "capacity change"; }
    pattern $((LAST * 512)) 512 >/tmp/p
    dd if=/tmp/p of=/dev/vda bs=512 seek="$LAST" oflag=direct conv=fsync 2>/dev/null || fail "write at the last sector"
    say "RESIZE-READY $SECTORS"
    wait_size "$GROW"
    [ "$(changes)" -ge 1 ] || fail "no 'capacity change' in dmesg after the grow"
    say "dmesg: $(dmesg | grep "capacity change" | tail -n 1 | sed 's/^\[[^]]*\] //')"
    NL=$((GROW - 1))
    pattern $((NL * 512)) 512 >/tmp/p
    dd if=/tmp/p of=/dev/vda bs=512 seek="$NL" oflag=direct conv=fsync 2>/dev/null || fail "write at the new last sector $NL"
    dd if=/dev/vda of=/tmp/r bs=512 skip="$NL" count=1 iflag=direct 2>/dev/null || fail "read at the new last sector"
    cmp /tmp/p /tmp/r || fail "data mismatch at the new last sector"
    pattern $((LAST * 512)) 512 >/tmp/p
    dd if=/dev/vda of=/tmp/r bs=512 skip="$LAST" count=1 iflag=direct 2>/dev/null || fail "read at the old last sector"
    cmp /tmp/p /tmp/r || fail "the old last sector changed"
    say "RESIZE-GROWN $GROW"
    wait_size "$SHRINK"
    [ "$(changes)" -ge 2 ] || fail "no second 'capacity change' in dmesg after the shrink"
    say "dmesg: $(dmesg | grep "capacity change" | tail -n 1 | sed 's/^\[[^]]*\] //')"
    SECTORS=$SHRINK
    past_end
    dd if=/dev/vda of=/tmp/r bs=512 skip=$((SHRINK - 1)) count=1 iflag=direct 2>/dev/null || fail "read at the last sector after the shrink"
    dmesg_check
    say "PASS resize"
    ;;
wce)
    # The write cache (VIRTIO_BLK_F_CONFIG_WCE), toggled through sysfs. A
    # 64 KiB block at sector 2048 is written in write-back mode, one at
    # sector 8192 in write-through mode, both O_DIRECT and never flushed;
    # after WCE-WRITTEN the host SIGKILLs vblk and checks both in the image
    # (tests/guest/e2e-config.sh).
    ct() { cat /sys/block/vda/cache_type; }
    set_ct() {
        echo "$1" >/sys/block/vda/cache_type || fail "writing '$1' to cache_type"
        [ "$(ct)" = "$1" ] || fail "cache_type is '$(ct)' after writing '$1'"
    }
    [ "$(ct)" = "write back" ] || fail "cache_type is '$(ct)' at boot, want 'write back'"
    pattern $((2048 * 512)) 65536 >/tmp/p
    dd if=/tmp/p of=/dev/vda bs=65536 seek=16 oflag=direct 2>/dev/null || fail "write-back write"
    set_ct "write through"
    set_ct "write back"
    set_ct "write through"
    pattern $((8192 * 512)) 65536 >/tmp/p
    dd if=/tmp/p of=/dev/vda bs=65536 seek=64 oflag=direct 2>/dev/null || fail "write-through write"
    say "cache_type toggled: write back -> write through -> write back -> write through"
    dmesg_check
    say "WCE-WRITTEN"
    say "PASS wce"
    ;;
wce-reconnect)
    # The write cache across a daemon restart (vhost-user, QEMU reconnect=1):
    # the guest chooses write-through and prints WCE-THROUGH; the host kills
    # vblk, writes "vblk-restarted" at sector 4096 of the image and starts a
    # new vblk (--write-cache on) on the same socket. The guest polls that
    # sector until it reads the marker (through the new daemon), then
    # writes 64 KiB at sector 8192 with O_DIRECT and no flush and prints
    # WCE-WRITTEN; the host SIGKILLs vblk again and checks that block has
    # no dirty page in the host page cache (e2e-config.sh).
    ct() { cat /sys/block/vda/cache_type; }
    echo "write through" >/sys/block/vda/cache_type || fail "writing cache_type"
    [ "$(ct)" = "write through" ] || fail "cache_type is '$(ct)'"
    say "WCE-THROUGH"
    i=0
    until [ "$(dd if=/dev/vda bs=512 skip=4096 count=1 iflag=direct 2>/dev/null | head -c 14)" = "vblk-restarted" ]; do
        [ $i -ge 600 ] && fail "no restart marker at sector 4096 after 120 s"
        sleep 0.2; i=$((i + 1))
    done
    [ "$(ct)" = "write through" ] || fail "cache_type is '$(ct)' after the restart"
    pattern $((8192 * 512)) 65536 >/tmp/p
    dd if=/tmp/p of=/dev/vda bs=65536 seek=64 oflag=direct 2>/dev/null || fail "write-through write after the restart"
    dmesg_check
    say "WCE-WRITTEN"
    say "PASS wce-reconnect"
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
    dmesg_check
    say "PASS bench"
    ;;
demo)
    echo "--- the guest sees:"
    dmesg | grep -i -E "virtio|vda" | tail -n 8
    echo "--- /dev/vda: $SECTORS sectors of 512 bytes ($((SECTORS / 2048)) MiB), serial '$(cat /sys/block/vda/serial)'"
    echo "hello from the guest, $(date)" | dd of=/dev/vda bs=512 conv=sync,fsync oflag=direct 2>/dev/null
    echo "--- wrote sector 0 and read it back: $(dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\0')"
    dmesg_check
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
