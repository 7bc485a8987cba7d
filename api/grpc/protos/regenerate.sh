#!/bin/sh
# Regenerate the Python code of durabletask's protocol from proto/ (see __init__.py).
# Needs grpcio-tools (pip install grpcio-tools==1.85.1, any venv); run from the repository root.
set -eu
here=api/grpc/protos
python -m grpc_tools.protoc -I "$here/proto" --python_out="$here" --pyi_out="$here" --grpc_python_out="$here" \
    "$here"/proto/*.proto
# protoc writes `import orchestration_pb2`; the modules live in this package.
sed -i -E 's/^import (attestation|orchestration|history_events|orchestrator_actions|orchestrator_service)_pb2 as/from api.grpc.protos import \1_pb2 as/' \
    "$here"/*_pb2*.py "$here"/*_pb2.pyi
# Only the service has stubs; the other files' *_pb2_grpc.py modules are empty.
for f in attestation orchestration history_events orchestrator_actions; do rm -f "$here/${f}_pb2_grpc.py"; done
