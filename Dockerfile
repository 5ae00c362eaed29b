# One image for every role: Locust master, Locust worker, drain worker, loss check (the command picks the role).
#   docker build -t queuestorm .
#   docker run --rm -e REDIS_URL=redis://my-redis:6379/0 queuestorm \
#     locust -f locustfiles/enqueue.py --scenario scenarios/loss-race.yaml --run-time 30s
# BASE: any image with python3 (>= 3.10) and its venv module; .ci/run builds on a Debian image of its own making.
ARG BASE=python:3.12-slim
FROM ${BASE}
WORKDIR /app
RUN python3 -m venv /opt/queuestorm
ENV PATH=/opt/queuestorm/bin:$PATH PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY queuestorm ./queuestorm
RUN pip install --no-cache-dir . && queuestorm --help >/dev/null
COPY locustfiles ./locustfiles
COPY workers ./workers
COPY scenarios ./scenarios
# Locust web UI, Locust master <-> workers
EXPOSE 8089 5557
CMD ["locust", "-f", "locustfiles/enqueue.py"]
