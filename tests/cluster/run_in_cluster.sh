#!/usr/bin/env bash
# The first process of fresh network, PID and mount namespaces (tests/test_ray_cluster.py):
#
#   unshare --net --pid --fork --kill-child --mount-proc bash tests/cluster/run_in_cluster.sh PLAN
#
# The network namespace has only loopback, so both Ray nodes register at 127.0.0.1 and
# nothing outside can reach them. This shell is PID 1 of the namespace: it reaps the
# processes Ray leaves orphaned, and when it exits the kernel ends every process of the
# namespace, the whole cluster included.
set -euo pipefail
ip link set lo up
"${MMDATA_CLUSTER_PYTHON:-python3}" -m tests.cluster.session "$@"
