#!/usr/bin/env bash
# Run dapr/python-sdk's examples/workflow on Headrace with only their imports changed (issue 13).
#
#   ops/dapr_examples.sh PATH/TO/python-sdk [--bootstrap-servers HOST:PORT] [--all] [EXAMPLE ...]
#
# Fetches nothing: give it a checkout you fetched. It copies the examples to a scratch folder,
# rewrites their imports (dapr.ext.workflow -> engine, dapr.ext.workflow.aio -> engine.aio,
# dapr.clients / dapr.conf -> engine.client.dapr_client), runs each one against Kafka (the one in
# --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS, e.g. from `ops/dev up`, else a private one on free
# ports, stopped at the end) and prints a table of the expected output lines found. Each example
# starts its own engine and worker and uses its own topic prefix. Details: ops/dapr_examples.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HEADRACE_VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "ops/dapr_examples.sh: no virtualenv at $VENV; run ops/dev up (or ops/dev test) once first" >&2
    exit 2
fi
# The examples import pydantic (pydantic_models, async_activities), as their requirements.txt says.
if ! "$VENV/bin/python" -c "import pydantic" 2>/dev/null; then
    echo "ops/dapr_examples.sh: the examples need pydantic: $VENV/bin/pip install 'pydantic>=2'" >&2
    exit 2
fi
cd "$ROOT"
exec "$VENV/bin/python" -m ops.dapr_examples "$@"
