# Fulfillment service image. Build from the repo root:
#   docker build -t fulfillment:local .      (or: docker compose -f deploy/compose.yaml build)
# Keep .cache/ (local Kafka jars, PostgreSQL data) and .venv/ out of the build context
# with a .dockerignore.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
RUN pip install . \
 && rm -rf /src/build \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/fulfillment fulfillment

WORKDIR /home/fulfillment
USER fulfillment
ENV HTTP_PORT=8080
EXPOSE 8080

ENTRYPOINT ["fulfillment"]
CMD ["run"]
