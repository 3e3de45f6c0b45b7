#!/usr/bin/env bash
# Install the NBD servers the NBD tests start themselves: qemu-nbd and
# qemu-img (qemu-utils) and nbdkit, from the host's configured apt sources.
# Idempotent; prints nothing when everything is there.
set -euo pipefail
missing=()
command -v qemu-nbd >/dev/null || missing+=(qemu-utils)
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v nbdkit >/dev/null || missing+=(nbdkit)
[ ${#missing[@]} = 0 ] && exit 0
echo "setup-nbd: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
