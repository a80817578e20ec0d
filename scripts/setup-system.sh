#!/usr/bin/env bash
# Installs the Debian packages nodemesh needs and makes kernel headers available to bcc.
# Idempotent: installs only what is missing; safe to run on every `make setup`.
set -euo pipefail

packages=(python3-bpfcc bpftool iproute2 iptables nftables linux-headers-amd64 tcpdump curl kubectl)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # kubectl may come from outside Debian; accept any kubectl already on PATH.
    if [ "$p" = kubectl ] && command -v kubectl >/dev/null; then continue; fi
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # kubectl is not in every Debian release; install it when the archive has it, otherwise go on.
  avail=()
  for p in "${missing[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then avail+=("$p"); else echo "setup: $p not in the archive, skipped" >&2; fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${avail[@]}" >/dev/null
fi

# bcc compiles against kernel headers at /lib/modules/$(uname -r)/build. This kernel ships none; Debian's
# 6.1 headers serve for cgroup and socket programs (DESIGN.md §5), so point build/ and source/ at them.
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build" ]; then
  arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$arch_dir" ] || [ -z "$common_dir" ]; then
    echo "setup: no linux headers under /usr/src; eBPF programs will not compile" >&2
    exit 1
  fi
  mkdir -p "$kdir"
  ln -sfn "$arch_dir" "$kdir/build"
  ln -sfn "$common_dir" "$kdir/source"
  echo "setup: kernel headers fallback: $kdir/build -> $arch_dir"
fi

# bpffs for pinned programs and maps.
if ! mount | grep -q " /sys/fs/bpf type bpf"; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: could not mount bpffs at /sys/fs/bpf" >&2
fi
