# Sourced by /init (tests/guest/init.sh) for vblk.test=write|verify|ioerr|
# readonly: the pattern blocks (and fio, --with-fio) written and verified,
# writes refused on a read-only disk, I/O errors when the storage is gone.

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
esac
