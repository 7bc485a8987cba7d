"""Property-based run of schemathesis against the running API's /openapi.json (Kafka up).

Schemathesis generates requests from the OpenAPI document (valid and invalid path segments,
query parameters and bodies) for every operation, and checks that no answer is a 5xx, and that
every answer's status code, content type and body match the document.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.support import ApiServer

pytestmark = pytest.mark.kafka

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.mark.timeout(600)
def test_no_5xx_and_every_answer_matches_the_document(api: ApiServer, tmp_path: Path) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary is not None, "schemathesis is in the test extra: pip install -e '.[test]'"
    result = subprocess.run(
        [
            binary,
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "50",
            "--seed",
            "20261129",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    print(output[-4000:])
    assert result.returncode == 0, (
        f"schemathesis found problems:\n{output[-12000:]}\n--- API log ---\n{api.log_tail()}"
    )
