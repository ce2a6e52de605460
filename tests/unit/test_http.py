"""The shared HTTP client against a real local HTTP server that drops, stalls, throttles and fails on purpose."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.http import HttpClient, Response


class Script:
    """What the server answers, one entry per request: a status with headers, or "drop" (close unanswered)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]] | str] = []
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    def next(self) -> tuple[int, dict[str, str]] | str:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, {})


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append((self.command, self.path, body))
            answer = script.next()
            if answer == "drop":  # the work is done, the answer never arrives
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            assert not isinstance(answer, str)
            status, headers = answer
            payload = json.dumps({"status": status, "auth": self.headers.get("Authorization")}).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


def client(**options: object) -> HttpClient:
    settings: dict[str, object] = {"headers": {"Authorization": "Bearer t"}, "timeout": 10, "sleep": lambda s: None,
                                   **options}
    return HttpClient("Engine", **settings)  # type: ignore[arg-type]


def test_an_answer_comes_back_decoded_with_the_headers_sent(server):
    url, script = server
    answer = client().send("POST", f"{url}/runs", body={"a": 1}, query={"x": ["1", "2"], "skip": None})
    assert answer.status == 200 and answer.body["auth"] == "Bearer t"
    assert script.seen == [("POST", "/runs?x=1&x=2", b'{"a": 1}')]


def test_a_repeatable_request_is_sent_again_after_a_lost_answer_and_a_5xx(server):
    url, script = server
    script.answers = ["drop", (503, {}), (201, {})]
    http = client()
    assert http.send("POST", f"{url}/trigger", body={}, repeatable=True).status == 201
    assert len(script.seen) == 3 and http.waits == [1.0, 2.0]


def test_a_write_that_is_not_repeatable_is_never_sent_twice(server):
    url, script = server
    script.answers = ["drop"]
    with pytest.raises(SubmitOutcomeUnknownError, match="may or may not have taken effect"):
        client().send("POST", f"{url}/dispatch", body={})
    assert len(script.seen) == 1
    script.answers = [(502, {})]
    with pytest.raises(SubmitOutcomeUnknownError, match="HTTP 502"):
        client().send("POST", f"{url}/dispatch", body={})
    assert len(script.seen) == 2


def test_every_answer_lost_leaves_a_write_unknown_and_a_read_unreachable(server):
    url, script = server
    script.answers = ["drop"] * 10
    with pytest.raises(SubmitOutcomeUnknownError, match=r"5 tries\): it may or may not have taken effect"):
        client().send("PUT", f"{url}/object", body={}, repeatable=True)
    script.answers = ["drop"] * 10
    with pytest.raises(SubmitError, match="cannot reach Engine") as info:
        client().send("GET", f"{url}/object")
    assert not isinstance(info.value, SubmitOutcomeUnknownError)


def test_a_refused_connection_is_retried_even_for_a_write_since_nothing_was_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    http = client(delays=(0.0, 0.0))
    with pytest.raises(SubmitError, match=r"cannot reach Engine at http://127\.0\.0\.1") as info:
        http.send("POST", f"http://user:secret@127.0.0.1:{port}/dispatch", body={})
    assert not isinstance(info.value, SubmitOutcomeUnknownError) and "secret" not in str(info.value)
    assert http.waits == [0.0, 0.0]


def test_credentials_in_the_url_become_a_basic_header_and_never_reach_a_message(server):
    url, _ = server
    host = url.removeprefix("http://")
    answer = client(headers={}).send("GET", f"http://admin:p%40ss@{host}/x")
    assert answer.body["auth"] == "Basic YWRtaW46cEBzcw=="  # admin:p@ss


def test_429_waits_what_retry_after_asks_and_a_longer_wait_is_left_to_the_caller(server):
    url, script = server
    script.answers = [(429, {"Retry-After": "7"}), (200, {})]
    http = client()
    assert http.send("GET", f"{url}/x").status == 200 and http.waits == [7.0]
    script.answers = [(429, {"Retry-After": "9999"})]
    assert client().send("GET", f"{url}/x").status == 429


def test_an_engine_rate_limit_hook_decides_its_own_waits(server):
    url, script = server
    script.answers = [(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1010"}), (200, {})]

    def github(response: Response, now: float) -> float | None:
        if response.status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
            return float(response.headers["x-ratelimit-reset"]) - now + 1
        return None

    http = client(rate_limit=github, clock=lambda: 1000.0)
    assert http.send("GET", f"{url}/x").status == 200 and http.waits == [11.0]


def test_rate_limit_waits_are_tries_too_so_an_engine_that_keeps_throttling_is_asked_a_bounded_number_of_times(server):
    url, script = server
    script.answers = [(429, {"Retry-After": "1"})] * 10
    http = client(delays=(0.5, 0.5))
    assert http.send("GET", f"{url}/x").status == 429  # the last answer, for the caller to report
    assert len(script.seen) == 3 and http.waits == [1.0, 1.0]
