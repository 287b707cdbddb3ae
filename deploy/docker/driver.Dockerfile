# syntax=docker/dockerfile:1
# Spark drivers and executors: the gateway's driver Pods (kubernetes.pod.image) and the runner's
# SparkApplications (runner.kubernetes.images). Spark 4.1.4 at /opt/spark with the official image's
# Kubernetes entrypoint (executors start through it), sparkgate's driver plugin (the path catalog,
# the batch sandbox) at /opt/sparkgate/sparkgate-driver-plugin.jar (kubernetes.plugin_jar), and
# the job program at /opt/sparkgate/program.py (runner.kubernetes.main_file).
#
#   docker build -f deploy/docker/driver.Dockerfile -t ghcr.io/sparkgate/spark-driver:4.1.4 .

# The official Spark image: the distribution, a Temurin JDK 17, and Spark's entrypoint for
# driver and executor Pods. Its Python is Ubuntu's 3.10; sparkgate needs 3.11 (final stage).
FROM apache/spark:4.1.4-scala2.13-java17-ubuntu AS spark

# sparkgate's driver plugin, compiled once here against this Spark's jars. Drivers elsewhere build
# it with javac at first use (sparkgate.spark.plugin); in a Pod the root filesystem may be
# read-only and every start would pay for it.
FROM spark AS plugin
USER root
COPY src/sparkgate/spark/driver_plugin/ /build/src/
RUN mkdir /build/classes \
 && javac -nowarn -cp "/opt/spark/jars/*" -d /build/classes /build/src/*.java \
 && jar cf /build/sparkgate-driver-plugin.jar -C /build/classes .

# sparkgate as a wheel: the final image installs it without its sources in a layer.
FROM python:3.11.14-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
# What Spark's entrypoint runs: bash, tini (PID 1), ps (Spark's scripts), nss_wrapper (a user
# name for a UID with no passwd entry, as OpenShift assigns).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini procps libnss-wrapper \
 && rm -rf /var/lib/apt/lists/*
# The JDK is a self-contained Temurin build: it runs on this Debian as on Ubuntu.
COPY --from=spark /opt/java/openjdk /opt/java/openjdk
COPY --from=spark /opt/spark /opt/spark
COPY --from=spark /opt/entrypoint.sh /opt/decom.sh /opt/
# Where driver Pods load it from (kubernetes.plugin_jar, passed as spark.jars).
COPY --from=plugin /build/sparkgate-driver-plugin.jar /opt/sparkgate/sparkgate-driver-plugin.jar
ENV JAVA_HOME=/opt/java/openjdk \
    SPARK_HOME=/opt/spark \
    PATH=/opt/java/openjdk/bin:/opt/spark/bin:$PATH \
    PYSPARK_PYTHON=/usr/local/bin/python3 \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python3 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Python for the job program and for Python UDFs: pyspark itself is Spark's own
# (/opt/spark/python, put on the path by spark-submit); these are the packages its sql and connect
# parts import (pyspark 4.1.4's extras), and sparkgate, which the job program imports (manifest
# validation, progress lines).
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check /wheels/sparkgate-*.whl \
      "pandas>=2.2.0" "pyarrow>=15.0.0" "numpy>=1.21" "grpcio>=1.76.0" "grpcio-status>=1.76.0" \
      "googleapis-common-protos>=1.71.0" "zstandard>=0.25.0"
COPY src/sparkgate/runner/program.py /opt/sparkgate/program.py

# Spark's user in its official image (UID 185), numeric so that runAsNonRoot can be checked. It
# writes to Spark's work directory and to the path catalog's tables (/opt/sparkgate/catalog/<name>,
# the driver's own: gone with its Pod).
RUN groupadd --system --gid 185 spark \
 && useradd --system --uid 185 --gid spark --home-dir /nonexistent --shell /usr/sbin/nologin spark \
 && mkdir -p /opt/spark/work-dir /opt/sparkgate/catalog \
 && chown spark:spark /opt/spark/work-dir /opt/sparkgate/catalog
WORKDIR /opt/spark/work-dir
USER 185:185
# Spark Connect (driver Pods), the driver's RPC endpoint and block manager (executors call them).
EXPOSE 15002 7078 7079
ENTRYPOINT ["/opt/entrypoint.sh"]
