"""A bug in a handler is answered once and logged once (Starlette's last resort re-raises it, and
the server then logs a second traceback)."""

from __future__ import annotations

import logging

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings


async def test_an_unexpected_error_is_a_500_with_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # No lifespan: nothing connects to Kafka; the gateway's read is made to fail like a bug would.
    app = create_app(ApiSettings.from_env({}))

    async def broken(instance_id: str) -> None:
        raise RuntimeError("a bug")

    app.state.gateway.get = broken
    transport = httpx.ASGITransport(app=app)  # raises what the app lets escape
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.get("/v1.0/workflows/dapr/some-id")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_GET_WORKFLOW",
        "message": "internal error: RuntimeError: a bug",
    }
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert tracebacks[0].levelno == logging.ERROR
