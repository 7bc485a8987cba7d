# One image for the engine, the activity workers and the API; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. With the `otel` extra (traces are
# off unless OTEL_* is set) and the `grpc` extra (`headrace grpc`), one image runs every command.
COPY pyproject.toml README.md ./
RUN mkdir -p engine api ops \
    && touch engine/__init__.py api/__init__.py ops/__init__.py \
    && pip install ".[otel,grpc]" \
    && pip uninstall -y headrace

COPY engine ./engine
COPY api ./api
COPY ops ./ops
# Workflow apps are imported by reference (`--app examples.app:runtime`); /app is on the path
# so the bundled examples, or an app mounted under /app, can be found.
COPY examples ./examples
ENV PYTHONPATH=/app
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app headrace

USER headrace
EXPOSE 3500
CMD ["headrace", "--help"]
