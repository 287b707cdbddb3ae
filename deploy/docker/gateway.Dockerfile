# syntax=docker/dockerfile:1
# The gateway, the Spark Runner and the Playground: one image, the command picks the part
# (`sparkgate gateway`, `sparkgate runner`, `sparkgate playground`). The gateway relays Spark
# Connect bytes and needs no Spark; the runner's jobs are Spark Connect clients of the gateway.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t ghcr.io/sparkgate/sparkgate:0.1.0 .
#
# Python 3.11 is Debian 12's. tests/deploy/test_images.py builds this file with buildah and runs
# the image.

FROM debian:12.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The Spark Connect client the runner's jobs use (`python -m sparkgate.runner.program --remote`):
# pure Python, no JVM, no jars. 4.1.3 is the newest 4.1 client published; it talks to 4.1.4 drivers.
ARG PYSPARK_CLIENT_VERSION=4.1.3
COPY pyproject.toml README.md /src/
COPY src /src/src
# A virtualenv copied whole into the final stage: no pip cache or sources left behind.
RUN python3 -m venv /opt/sparkgate \
 && /opt/sparkgate/bin/pip install --no-cache-dir --disable-pip-version-check -q \
      "/src[kubernetes,postgres]" "pyspark-client==${PYSPARK_CLIENT_VERSION}"

FROM debian:12.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/sparkgate /opt/sparkgate
# The root filesystem is read-only in the chart: no bytecode written next to the sources.
ENV PATH=/opt/sparkgate/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 sparkgate \
 && useradd --system --uid 10001 --gid sparkgate --home-dir /var/lib/sparkgate --create-home \
      --shell /usr/sbin/nologin sparkgate
USER 10001:10001
WORKDIR /var/lib/sparkgate
# Spark Connect, admin endpoints, Spark Runner, Playground.
EXPOSE 15002 9090 50051 8080
ENTRYPOINT ["sparkgate"]
CMD ["gateway"]
