# One image for every role: Locust master, Locust worker, drain worker (the command picks the role).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY queuestorm ./queuestorm
RUN pip install --no-cache-dir .
COPY locustfiles ./locustfiles
COPY workers ./workers
# Locust web UI, Locust master <-> workers
EXPOSE 8089 5557
CMD ["locust", "-f", "locustfiles/enqueue.py"]
