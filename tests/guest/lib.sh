# Sourced by the host-side guest scripts (tests/guest/e2e*.sh): the work
# directory each run keeps or removes, and timing. Not part of the guest's
# initramfs (that is init.sh and init.d/).

# e2e_workdir PREFIX: a fresh work directory W=/tmp/vblk-PREFIX.XXXXXX.
e2e_workdir() {
    W=$(mktemp -d "/tmp/vblk-$1.XXXXXX")
}

# e2e_dispose RC: after a failure (RC != 0) or with VBLK_E2E_KEEP=1 the work
# directory stays and the script (named in the message) says where;
# otherwise it is removed.
e2e_dispose() {
    local name
    name=$(basename "$0" .sh)
    if [ "$1" != 0 ]; then echo "$name: work directory kept: $W" >&2
    elif [ "${VBLK_E2E_KEEP:-0}" = 1 ]; then echo "$name: work directory kept: $W"
    else rm -rf "$W"; fi
}

now() { echo "$EPOCHREALTIME"; }
# since T0: the seconds since T0 (a `now`), as "12.3s".
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
