#!/bin/bash
# The driver image's entrypoint (/opt/entrypoint.sh): what Spark on Kubernetes expects of an
# image's entrypoint, written for this image.
#
#   driver ARGS...    a Spark Operator driver Pod: spark-submit ARGS in client mode, listening on
#                     the Pod's address (SPARK_DRIVER_BIND_ADDRESS, set by Spark in the Pod spec)
#   executor          an executor Pod that a driver asked for: Spark's Kubernetes executor backend,
#                     configured by the environment Spark sets in the Pod spec (SPARK_DRIVER_URL,
#                     SPARK_EXECUTOR_ID, SPARK_EXECUTOR_CORES, SPARK_EXECUTOR_MEMORY,
#                     SPARK_APPLICATION_ID, SPARK_EXECUTOR_POD_IP, SPARK_EXECUTOR_POD_NAME,
#                     SPARK_RESOURCE_PROFILE_ID and the JVM options SPARK_JAVA_OPT_0, _1, ...)
#   anything else     run as given, under tini (sparkgate's driver Pods: /opt/spark/bin/spark-submit ...)
#
# tini is PID 1 for the JVM: it forwards SIGTERM (a Pod deletion) and reaps Python workers.
set -euo pipefail

# A user ID with no entry in /etc/passwd (a cluster that assigns UIDs, as OpenShift does) still
# needs a name: Hadoop's login code asks the system for one. nss_wrapper gives it one.
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
  passwd_file=$(mktemp)
  cp /etc/passwd "$passwd_file"
  echo "spark:x:$(id -u):$(id -g):spark:${SPARK_HOME}:/bin/false" >>"$passwd_file"
  export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$passwd_file" NSS_WRAPPER_GROUP=/etc/group
fi

case "${1:-}" in
  driver)
    shift
    exec /usr/bin/tini -s -- "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # The JVM options the driver passed, in their order (SPARK_JAVA_OPT_0, _1, ... _10, ...).
    java_opts=()
    while IFS= read -r name; do
      java_opts+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n)
    # The classpath as Spark's own images build it: Hadoop's configuration first, then Spark's
    # configuration, spark.executor.extraClassPath (SPARK_CLASSPATH) and jars, then what a
    # Hadoop-free Spark needs (SPARK_DIST_CLASSPATH) and any extra jars of the image.
    classpath="${SPARK_CONF_DIR:-${SPARK_HOME}/conf}"
    for part in "${SPARK_CLASSPATH:-}" "${SPARK_HOME}/jars/*" "${SPARK_DIST_CLASSPATH:-}" "${SPARK_EXTRA_CLASSPATH:-}"; do
      if [ -n "$part" ]; then
        classpath="${classpath}:${part}"
      fi
    done
    if [ -n "${HADOOP_CONF_DIR:-}" ]; then
      classpath="${HADOOP_CONF_DIR}:${classpath}"
    fi
    exec /usr/bin/tini -s -- java "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" -cp "$classpath" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-}"
    ;;
  *)
    exec /usr/bin/tini -s -- "$@"
    ;;
esac
