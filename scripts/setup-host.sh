#!/usr/bin/env bash
# Prepares a Debian host for Berth's OCI runtime: installs the container tools and moves cgroup
# controllers off the v2 hierarchy so crun accepts the v1 hybrid layout. Idempotent; needs root.
# `berth doctor` checks the same things and `berth doctor --fix` runs the same repairs.
set -euo pipefail

PACKAGES=(crun runc debootstrap uidmap iproute2 iptables skopeo umoci tini ca-certificates s3fs gcc libc6-dev)
# s3fs: the FUSE filesystem a worker mounts modal.CloudBucketMount buckets with.
# gcc, libc6-dev: the worker builds berth-execd (src/berth/worker/execd.c, static) that sandbox execs go through;
# without them execs fall back to `crun exec`.
# Optional: gVisor for `berth up --runtime runsc`. A distribution without the package still gets the rest.
OPTIONAL_PACKAGES=(runsc)

if [ "$(id -u)" != 0 ]; then
    echo "setup-host: needs root (installs packages and mounts a cgroup hierarchy)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi
for pkg in "${OPTIONAL_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
    echo "setup-host: installing $pkg (optional)"
    if ! { apt-cache show "$pkg" >/dev/null 2>&1 || { apt-get update -q && apt-cache show "$pkg" >/dev/null 2>&1; }; } ||
        ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" </dev/null; then
        echo "setup-host: warning: could not install optional package $pkg; continuing without it" >&2
    fi
done

# crun refuses a hybrid hierarchy while cgroup2 still holds a controller (hugetlb on these machines).
# Mount each such controller as its own v1 hierarchy under /sys/fs/cgroup/<name>.
unified=/sys/fs/cgroup/unified
if [ -r "$unified/cgroup.controllers" ]; then
    for ctl in $(cat "$unified/cgroup.controllers"); do
        if ! mountpoint -q "/sys/fs/cgroup/$ctl"; then
            echo "setup-host: moving cgroup controller $ctl from cgroup2 to v1"
            mkdir -p "/sys/fs/cgroup/$ctl"
            mount -t cgroup -o "$ctl" cgroup "/sys/fs/cgroup/$ctl"
        fi
    done
fi

# Containers reach the internet through NAT on the host.
echo 1 > /proc/sys/net/ipv4/ip_forward
modprobe overlay 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true
echo "setup-host: ok"
