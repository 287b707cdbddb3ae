# syntax=docker/dockerfile:1
# Spark drivers and executors: the gateway's driver Pods (kubernetes.pod.image) and the runner's
# SparkApplications (runner.kubernetes.images).
#
#   docker build -f deploy/docker/driver.Dockerfile -t ghcr.io/sparkgate/spark-driver:4.1.4 .
#
# Spark is the pyspark wheel's, the build `sparkgate up` runs on a laptop (its jars include Spark's
# Kubernetes scheduler), at /opt/spark; Java 17 and Python 3.11 are Debian 12's. Also in the image:
# sparkgate's driver plugin (the path catalog, the batch sandbox) at
# /opt/sparkgate/sparkgate-driver-plugin.jar (kubernetes.plugin_jar), the job program at
# /opt/sparkgate/program.py (runner.kubernetes.main_file), and /opt/entrypoint.sh and
# /opt/decom.sh, which start and decommission executors (and start Spark Operator drivers) as Spark
# on Kubernetes expects.
# tests/deploy/test_images.py builds this file with buildah and runs Spark from the image.
FROM debian:12.11-slim AS base
# tini is PID 1 of executors and operator drivers, ps serves Spark's scripts, nss_wrapper gives a
# name to a user ID with no passwd entry (see spark-entrypoint.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless python3 python3-venv tini procps \
      libnss-wrapper \
 && rm -rf /var/lib/apt/lists/*

# sparkgate as a wheel, so that no source tree is left in the image.
FROM base AS wheel
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN python3 -m venv /build \
 && /build/bin/pip install --no-cache-dir --disable-pip-version-check -q build \
 && /build/bin/python -m build --wheel --outdir /wheels /src

# One virtualenv: sparkgate, which the job program imports (manifest validation, progress lines),
# and pyspark at the version its `spark` extra pins, moved to /opt/spark (SPARK_HOME) and linked
# back so that Python finds it where pip put it.
FROM base AS spark
COPY --from=wheel /wheels /tmp/wheels
RUN python3 -m venv /opt/sparkgate/venv \
 && wheel=$(ls /tmp/wheels/sparkgate-*.whl) \
 && /opt/sparkgate/venv/bin/pip install --no-cache-dir --disable-pip-version-check -q "${wheel}[spark]" \
 && site=$(/opt/sparkgate/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && mv "$site/pyspark" /opt/spark \
 && ln -s /opt/spark "$site/pyspark" \
 && rm -rf /tmp/wheels
ENV SPARK_HOME=/opt/spark \
    JAVA_HOME=/usr/lib/jvm/default-java \
    PATH=/opt/sparkgate/venv/bin:/opt/spark/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYSPARK_PYTHON=/opt/sparkgate/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/sparkgate/venv/bin/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# sparkgate's driver plugin, compiled here against this Spark's jars. Drivers elsewhere build it
# with javac at first use (sparkgate.spark.plugin); in a Pod the root filesystem may be read-only
# and every start would pay for it.
FROM spark AS plugin
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
COPY src/sparkgate/spark/driver_plugin/ /build/src/
RUN mkdir /build/classes \
 && javac -nowarn -cp "/opt/spark/jars/*" -d /build/classes /build/src/*.java \
 && jar cf /build/sparkgate-driver-plugin.jar -C /build/classes .

FROM spark
COPY --from=plugin /build/sparkgate-driver-plugin.jar /opt/sparkgate/sparkgate-driver-plugin.jar
COPY src/sparkgate/runner/program.py /opt/sparkgate/program.py
COPY deploy/docker/spark-entrypoint.sh /opt/entrypoint.sh
COPY deploy/docker/spark-decom.sh /opt/decom.sh
# The class-data archive driver Pods start from (kubernetes.class_archive), built by a training run
# of a driver with the heap of the default Pod (4Gi of memory, 75 % heap): a cold driver then starts
# in about half the time.
COPY deploy/docker/train-class-archive.sh /opt/sparkgate/train-class-archive.sh
RUN /opt/sparkgate/train-class-archive.sh /opt/sparkgate/class-archive.jsa 3072m
# Spark's user in its official image (UID 185), numeric so that runAsNonRoot can be checked. It
# writes to Spark's work directory and to the path catalog's tables (/opt/sparkgate/catalog/<name>,
# the driver's own: gone with its Pod).
RUN groupadd --system --gid 185 spark \
 && useradd --system --uid 185 --gid spark --home-dir /opt/spark/work-dir --shell /usr/sbin/nologin spark \
 && mkdir -p /opt/spark/work-dir /opt/sparkgate/catalog \
 && chown spark:spark /opt/spark/work-dir /opt/sparkgate/catalog
WORKDIR /opt/spark/work-dir
USER 185:185
# Spark Connect (driver Pods), the driver's RPC endpoint and block manager (executors call them).
EXPOSE 15002 7078 7079
ENTRYPOINT ["/opt/entrypoint.sh"]
