# Sourced by /init (tests/guest/init.sh) for vblk.test=bench|demo: the
# workloads that show rather than check (relative guest-side figures, what
# the guest sees of the disk).

case "$TEST" in
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
esac
