# syntax=docker/dockerfile:1
# `hooktap relay` in a small image: the relay that owns public webhook URLs for a team's
# listeners. deploy/compose.yaml runs it behind Caddy (HTTPS); deploy/README.md tells the rest.

# Build stage: wheels for hooktap and every dependency, so the final stage needs no compiler,
# no network and no pip cache.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# With the nats extra, so one image serves a single relay and the instances on NATS.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[nats]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOOKTAP_HOME=/data
# The wheels are bind-mounted, not copied, so they never become a layer of this image.
# /data is created and owned here, before VOLUME: a new named volume starts as a copy of it,
# owner included, so the non-root relay can write its queue there.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "$(ls /wheels/hooktap-*.whl)[nats]" \
    && useradd --system --user-group --uid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin hooktap \
    && install -d -o hooktap -g hooktap -m 0700 /data
VOLUME /data
USER 10001:10001
EXPOSE 8787
# The relay drains on SIGTERM (--drain-timeout); compose's stop_grace_period must exceed it.
STOPSIGNAL SIGTERM
# The slim image has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --start-interval=2s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=3)"]
# The fixed part of the command; compose.yaml appends --public-url, --trusted-proxy and the rest.
# 0.0.0.0 inside the container: only the compose network reaches it (no port is published).
ENTRYPOINT ["hooktap", "relay", "--host", "0.0.0.0", "--port", "8787", "--data-dir", "/data"]
