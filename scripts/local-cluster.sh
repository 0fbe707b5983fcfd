#!/usr/bin/env bash
# A Berth cluster on this machine: PostgreSQL, Redis and SeaweedFS S3 on loopback, a `berth server` on them
# (TLS on a private bridge), and N workers, each in its own network namespace. All state under DIR. Root.
#   scripts/local-cluster.sh up DIR N          returns once the server serves and every worker has joined
#   scripts/local-cluster.sh env DIR           the modal client's exports (eval "$(... env DIR)")
#   scripts/local-cluster.sh kill-worker DIR I SIGKILL worker I (1..N)
#   scripts/local-cluster.sh cut-worker DIR I  take worker I's link down; heal-worker DIR I brings it back
#   scripts/local-cluster.sh down DIR          stop everything and remove the namespaces and links
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
exec "${BERTH_PYTHON:-$repo/.venv/bin/python}" -m berth.devservices.cluster "$@"
