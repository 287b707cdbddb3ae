#!/bin/bash
# /opt/decom.sh: what an executor Pod's preStop hook runs when Spark decommissions executors
# (spark.decommission.enabled): it tells the executor JVM to hand its shuffle and cached blocks
# on (SIGPWR), then waits for it to exit, so the Pod ends only once nothing is lost.
set -uo pipefail
pid=$(pgrep -f -o 'org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend') || exit 0
kill -s PWR "$pid" || exit 0
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
done
