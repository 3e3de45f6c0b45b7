#!/usr/bin/env python3
"""Judge a crash-and-reconnect run (tests/guest/e2e-crash.sh) from the host.

usage: check-crash.py IMAGE GUEST_LOG KILLS [QEMU_TRACE] [--require-inflight]

IMAGE      the disk image after the run
GUEST_LOG  the guest's serial console: "VBLK-ACK w seq" after each acknowledged
           O_DIRECT+fsync write of writer w's block seq (init.d/writers.sh,
           test crash)
KILLS      one line per SIGKILL of the daemon: "kill K line L acks A", L = the
           number of console lines when it was killed
QEMU_TRACE QEMU's vhost_user_read/_write/_event trace: whether QEMU asked for
           the inflight region (GET_INFLIGHT_FD = 31, SET_INFLIGHT_FD = 32)

Checks, each with its own message: every acknowledged block is in the image
(writer w's block seq lives at byte ((w + 1) * 2048 + seq) * 4096, 64 lines of
"vblk-crash w=W seq=N" padded to 64 bytes); the console shows no I/O error or
write error (named by the kill it followed); writes completed after every
kill; with --require-inflight, QEMU sent SET_INFLIGHT_FD after every
(re)connection.
"""
import re
import sys

RB = 2048
GET_INFLIGHT_FD, SET_INFLIGHT_FD = 31, 32


def block(w, n):
    line = ("%-63s\n" % ("vblk-crash w=%d seq=%d" % (w, n))).encode()
    return line * 64


def ordinal(k):
    return "%d%s" % (k, {1: "st", 2: "nd", 3: "rd"}.get(k if k < 20 else k % 10, "th"))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    require_inflight = "--require-inflight" in sys.argv
    img, guest_log, kills_path = args[:3]
    trace = args[3] if len(args) > 3 else None
    lines = open(guest_log, errors="replace").read().splitlines()
    kills = []
    for l in open(kills_path):
        m = re.match(r"kill (\d+) line (\d+) acks (\d+)", l)
        if m:
            kills.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    problems = []

    def after_kill(i):
        """Which kill a console line (0-based index i) came after."""
        k = [kk for kk, at, _ in kills if at <= i]
        return f"after the {ordinal(k[-1])} kill" if k else "before the first kill"

    # 1. The console: no I/O error, no failed write.
    for i, l in enumerate(lines):
        if re.search(r"I/O error, dev|Buffer I/O error|blk_update_request|print_req_error|VBLK-WRITE-ERROR", l):
            problems.append(f"guest saw an I/O error {after_kill(i)} (console line {i + 1}): {l.strip()}")
            break
    for i, l in enumerate(lines):
        if "VBLK-TEST: FAIL" in l:
            problems.append(f"the guest's test failed {after_kill(i)} (console line {i + 1}): {l.strip()}")
            break

    # 2. Progress after each kill (a hang shows up here even if the guest's
    # watchdog did not fire).
    acks = [(i, int(m.group(1)), int(m.group(2))) for i, l in enumerate(lines)
            for m in [re.search(r"VBLK-ACK (\d+) (\d+)", l)] if m]
    for k, at, _ in kills:
        if not any(i >= at for i, _, _ in acks):
            problems.append(f"no write was acknowledged after the {ordinal(k)} kill (hang?)")
            break

    # 3. The image holds every acknowledged block.
    data = open(img, "rb").read()
    missing = []
    per_writer = {}
    for i, w, n in acks:
        per_writer[w] = max(per_writer.get(w, -1), n)
        off = ((w + 1) * RB + n) * 4096
        if data[off:off + 4096] != block(w, n):
            missing.append((i, w, n, data[off:off + 40]))
    for i, w, n, got in missing[:5]:
        problems.append(f"acknowledged block writer {w} seq {n} (acknowledged {after_kill(i)}) is not in the image: "
                        f"it holds {got!r}")
    if len(missing) > 5:
        problems.append(f"... {len(missing)} acknowledged blocks missing in all")
    summary = (f"host: {len(acks)} acknowledged blocks from {len(per_writer)} writers "
               f"({', '.join(f'w{w}: {n + 1}' for w, n in sorted(per_writer.items()))}); "
               f"{len(acks) - len(missing)} found intact in the image; daemon killed {len(kills)} times "
               f"(after {', '.join(str(a) for _, _, a in kills) or 'no'} acks)")
    print(summary)
    if not acks:
        problems.append("the guest acknowledged no write at all")

    # 4. The inflight region, from QEMU's trace.
    if trace:
        t = open(trace, errors="replace").read()
        get = len(re.findall(rf"vhost_user_write req:{GET_INFLIGHT_FD} ", t))
        set_ = len(re.findall(rf"vhost_user_write req:{SET_INFLIGHT_FD} ", t))
        conns = len(re.findall(r"vhost_user_write req:15 ", t))  # GET_PROTOCOL_FEATURES: once per connection
        print(f"host: QEMU trace: {conns} vhost-user connections, GET_INFLIGHT_FD sent {get} times, "
              f"SET_INFLIGHT_FD sent {set_} times")
        if require_inflight and set_ < len(kills) + 1:
            problems.append(f"QEMU never used the inflight region as required (SET_INFLIGHT_FD sent {set_} times over "
                            f"{conns} connections and {len(kills)} reconnects): the daemon does not offer "
                            f"VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD")
    if problems:
        for p in problems:
            print("crash: FAIL: " + p, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
