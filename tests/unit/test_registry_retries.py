"""The registry client retries what may pass (5xx, 429, unreachable) with backoff, within a
bound, and never what cannot (401, 404), against a local HTTP server that answers as told."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from geoflux.errors import ConfigurationError, PermanentError, TransientError
from schemas.codec import HttpSchemaRegistry


class Scripted(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).seen.append(self.path)
        status = type(self).answers.pop(0) if type(self).answers else 200
        body = json.dumps({"schema": '"string"'} if status == 200 else {"message": "no"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Scripted.answers, Scripted.seen = [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_transient_answers_are_retried_until_one_succeeds(server):
    Scripted.answers = [503, 429, 502]
    reg = HttpSchemaRegistry(server, retry_s=10)
    assert reg.schema_by_id(7) == '"string"'
    assert len(Scripted.seen) == 4


@pytest.mark.parametrize("status, error", [(401, ConfigurationError), (404, PermanentError)])
def test_refusals_are_not_retried(server, status, error):
    Scripted.answers = [status, 200]
    with pytest.raises(error):
        HttpSchemaRegistry(server, retry_s=10).schema_by_id(7)
    assert len(Scripted.seen) == 1


def test_retries_stop_at_their_bound(server):
    Scripted.answers = [503] * 1000
    t0 = time.monotonic()
    with pytest.raises(TransientError, match="503"):
        HttpSchemaRegistry(server, retry_s=1.0).schema_by_id(7)
    assert 1.0 <= time.monotonic() - t0 < 8 and len(Scripted.seen) >= 2


def test_an_unreachable_registry_is_transient_within_the_bound():
    t0 = time.monotonic()
    with pytest.raises(TransientError, match="unreachable"):
        HttpSchemaRegistry("http://127.0.0.1:1", retry_s=0.5, timeout_s=0.5).schema_by_id(7)
    assert time.monotonic() - t0 < 8
