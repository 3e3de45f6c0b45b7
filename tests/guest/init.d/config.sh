# Sourced by /init (tests/guest/init.sh) for vblk.test=resize|wce|
# wce-reconnect: the configuration changing under a running guest (online
# resize, the write cache toggled, kept across a daemon restart), driven by
# tests/guest/e2e-config.sh.

case "$TEST" in
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
esac
