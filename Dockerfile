# One image for the engine, the activity workers and the API; docker-compose.yml picks the command.
#
# Two stages: the first builds Headrace's wheel with the engine's hot modules compiled by mypyc
# (setup.py, HEADRACE_NATIVE=1; about a fifth less CPU per turn, docs/performance.md "The compiled
# build"), which needs a C compiler and mypy; the second installs that wheel without them.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# mypyc type-checks what it compiles, so the dependencies it imports must be installed beside it.
COPY pyproject.toml setup.py README.md ./
RUN mkdir -p engine api ops \
    && touch engine/__init__.py api/__init__.py ops/__init__.py \
    && pip install ".[otel,grpc]" "setuptools>=77" "mypy>=1.15" \
    && pip uninstall -y headrace
COPY engine ./engine
COPY api ./api
COPY ops ./ops
RUN HEADRACE_NATIVE=1 pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

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
    && pip uninstall -y headrace \
    && rm -rf engine api ops

COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app headrace
# Workflow apps are imported by reference (`--app examples.app:runtime`); /app is on the path so
# the bundled examples, or an app mounted under /app, can be found. Headrace itself is not copied
# here: it is the installed wheel, so its compiled modules are the ones imported.
COPY examples ./examples
ENV PYTHONPATH=/app

USER headrace
EXPOSE 3500
CMD ["headrace", "--help"]
