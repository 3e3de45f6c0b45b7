# Sourced by /init (tests/guest/init.sh) for vblk.test=crash|migrate:
# O_DIRECT writers that print VBLK-ACK for each acknowledged block while the
# host kills the daemon (crash) or migrates the guest (migrate), then every
# acknowledged block read back.

# ack_blocks W FIRST COUNT: the expected content of writer W's blocks
# FIRST .. FIRST+COUNT-1: 64 lines "vblk-crash w=W seq=N" padded to 64 bytes.
ack_blocks() {
    awk -v w="$1" -v a="$2" -v c="$3" 'BEGIN { for (n = a; n < a + c; n++) { l = sprintf("%-63s", "vblk-crash w=" w " seq=" n); for (i = 0; i < 64; i++) print l } }'
}
# ack_writer W END: writer W writes its blocks in order until uptime END or
# RB blocks; prints VBLK-ACK W N per acknowledged block; leaves the count in
# /tmp/wW.n (progress) and /tmp/wW.done, a failed seq in /tmp/wW.failed.
ack_writer() {
    w=$1 end=$2 n=0 base=$(( ($1 + 1) * RB ))
    while [ $n -lt $RB ]; do
        read -r up _ </proc/uptime
        [ "${up%%.*}" -ge "$end" ] && break
        ack_blocks $w $n 1 >/tmp/w$w.blk
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

# ack_readback NW: every block writers 0..NW-1 acknowledged, read back with
# O_DIRECT and compared; a writer whose write failed, or that had none
# acknowledged, fails the test. Leaves the number of blocks in `total`.
ack_readback() {
    total=0 w=0
    while [ $w -lt "$1" ]; do
        [ -f /tmp/w$w.failed ] && fail "writer $w: the write of seq $(cat /tmp/w$w.failed) failed: $(tr '\n' ' ' </tmp/w$w.err)"
        n=$(cat /tmp/w$w.done)
        [ "$n" -gt 0 ] || fail "writer $w: no write was acknowledged"
        ack_blocks $w 0 "$n" >/tmp/e
        dd if=/dev/vda of=/tmp/r bs=4096 skip=$(( (w + 1) * RB )) count="$n" iflag=direct 2>/dev/null || fail "writer $w: reading back $n blocks failed"
        if ! diff=$(cmp /tmp/e /tmp/r 2>&1); then
            at=$(echo "$diff" | sed -n 's/.*char \([0-9]*\).*/\1/p')
            fail "writer $w: acknowledged block seq $(( (${at:-1} - 1) / 4096 )) reads back wrong ($diff): $(dd if=/tmp/r bs=4096 skip=$(( (${at:-1} - 1) / 4096 )) count=1 2>/dev/null | head -c 63)"
        fi
        total=$((total + n))
        w=$((w + 1))
    done
}

case "$TEST" in
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
    read -r up _ </proc/uptime
    END=$(( ${up%%.*} + SECS ))
    say "CRASH-GO $NW writers for ${SECS}s"
    w=0
    while [ $w -lt $NW ]; do echo 0 >/tmp/w$w.n; ack_writer $w $END & w=$((w + 1)); done
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
    if [ "$(arg vblk.inject)" = lost ]; then
        # Show that the read-back can fail: lose an acknowledged block.
        dd if=/dev/zero of=/dev/vda bs=4096 seek=$(( 2 * RB + 5 )) count=1 oflag=direct conv=fsync 2>/dev/null
        say "INJECTED: zeroed writer 1's acknowledged block seq 5"
    fi
    # Every acknowledged block, read back with O_DIRECT (a failed write
    # fails here too).
    ack_readback $NW
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
    # The last close of a block device drops its page cache (kill_bdev):
    # hold /dev/vda open until the check.
    exec 3</dev/vda
    ack_blocks 9 0 $RCOUNT >/tmp/rexp
    [ "$(wc -c </tmp/rexp)" = $((RCOUNT * 4096)) ] || fail "generating the reader's pattern"
    dd if=/tmp/rexp of=/dev/vda bs=65536 seek=$((RSTART / 16)) oflag=direct conv=fsync 2>/dev/null || fail "writing the reader's region"
    sync
    echo 3 >/proc/sys/vm/drop_caches
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
    while [ $w -lt $NW ]; do ack_writer $w $END & w=$((w + 1)); done
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
    ack_readback $NW
    # The reader's region once more, with O_DIRECT (the disk, not the cache).
    dd if=/dev/vda of=/tmp/r bs=65536 skip=$((RSTART / 16)) count=$((RCOUNT / 16)) iflag=direct 2>/dev/null || fail "reading the reader's region"
    cmp /tmp/rexp /tmp/r >/dev/null 2>&1 || fail "the reader's region is wrong on disk"
    say "migrate: $total acknowledged blocks from $NW writers read back intact; the page cache holds the $(( $(cat /tmp/r.done) * RCHUNK / 256 )) MiB the device read"
    dmesg_check
    say "PASS migrate"
    ;;
esac
