# syntax=docker/dockerfile:1
# The mnist-backend service on CPU, serving the bundled model with ONNX Runtime.
#   docker build -t mnist-backend .
#   docker run -p 8000:8000 mnist-backend
#   docker run -p 8000:8000 -v "$(pwd)/models:/app/models" mnist-backend

# Build stage: install the package and its dependencies into a virtual environment.
# Without the "torch" extra: ONNX Runtime serves the model, so no torch is needed.
# A C compiler builds the package's native pixel statistics (src/mnist_backend/_digitcore.c).
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install .

# Runtime stage: the environment, the model and an unprivileged user, nothing else.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MNIST_MODEL_DIR=/app/models \
    MNIST_RUNTIME=onnx \
    MNIST_LOG_FORMAT=json
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --shell /usr/sbin/nologin mnist
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The published model; mount a volume on /app/models to serve another one.
COPY models ./models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# SIGTERM drains the requests in flight (MNIST_DRAIN_TIMEOUT_SECONDS), then exits 0.
STOPSIGNAL SIGTERM
CMD ["mnist-backend", "serve", "--host", "0.0.0.0", "--port", "8000"]
