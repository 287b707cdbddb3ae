#!/bin/bash
# Build the driver image's class-data archive (JVM class data sharing): start a Spark Connect
# server as driver Pods start it, with the JVM told to write the classes it loads when it exits,
# warm it up as sparkgate warms up drivers, stop it. Driver Pods of the same heap size then start
# from it (kubernetes.class_archive); others start without it, as the JVM says in their log.
#
#   train-class-archive.sh OUTPUT HEAP        e.g. /opt/sparkgate/class-archive.jsa 3072m
set -euo pipefail
out=$1 heap=$2
# The build's own host name may not resolve (a builder's /etc/hosts): Spark is told its address.
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=localhost
work=$(mktemp -d)
cd "$work"
"${SPARK_HOME}/bin/spark-submit" --master 'local[2]' --driver-memory "$heap" \
  --conf spark.connect.grpc.binding.address=127.0.0.1 --conf spark.connect.grpc.binding.port=15002 \
  --conf spark.ui.enabled=false --conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1 \
  --conf "spark.driver.defaultJavaOptions=-XX:ArchiveClassesAtExit=$out" \
  --class org.apache.spark.sql.connect.service.SparkConnectServer spark-internal >"$work/driver.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  if python -c 'import socket; socket.create_connection(("127.0.0.1", 15002), 1)' 2>/dev/null; then
    break
  fi
  kill -0 "$server" 2>/dev/null || { cat "$work/driver.log"; exit 1; }
  sleep 1
done
python -m sparkgate.clusters.warmup sc://127.0.0.1:15002
kill -TERM "$server"
wait "$server" || true
cd / && rm -rf "$work"
test -s "$out" || { echo "no class-data archive written to $out" >&2; exit 1; }
