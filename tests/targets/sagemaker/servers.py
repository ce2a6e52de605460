"""Servers the submit tests talk to: moto_server (AWS emulator) and a small recording SageMaker fake.

moto emulates CreatePipeline/UpdatePipeline/StartPipelineExecution/DescribePipelineExecution, S3 and
EventBridge Scheduler, but answers StopPipelineExecution and ListPipelineExecutionSteps with HTTP 500
(not implemented in moto 5.2) and finishes every execution at once. :class:`FakeSageMaker` covers those:
it answers SageMaker's JSON protocol (``X-Amz-Target: SageMaker.<Operation>``) as the API reference
documents, with scripted execution states, and records each request.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(log: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run ``python -m moto.server`` on 127.0.0.1; yield its URL; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                        break
                except OSError:
                    if process.poll() is not None:
                        raise RuntimeError(f"moto_server exited: {log.read_text()}") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"moto_server not ready after {timeout}s: {log.read_text()}") from None
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def reset_moto(url: str) -> None:
    """Forget every resource moto holds (between tests sharing one server)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


class FakeSageMaker:
    """A recording SageMaker endpoint with scripted execution states."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.states: list[str] = []
        self.failure_reason = ""
        self.steps: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                operation = self.headers.get("X-Amz-Target", "").removeprefix("SageMaker.")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                fake.requests.append((operation, body))
                status, answer = fake.answer(operation, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arn = body.get("PipelineExecutionArn", "")
        if operation == "DescribePipelineExecution":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return 200, {"PipelineExecutionArn": arn, "PipelineExecutionStatus": state,
                         "FailureReason": self.failure_reason}
        if operation == "ListPipelineExecutionSteps":
            return 200, {"PipelineExecutionSteps": self.steps}
        if operation == "StopPipelineExecution":
            return 200, {"PipelineExecutionArn": arn}
        return 400, {"__type": "UnknownOperationException", "message": f"unknown operation {operation!r}"}

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.requests]

    def __enter__(self) -> FakeSageMaker:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class LosingProxy:
    """A proxy in front of moto_server that loses answers: it forwards a request, lets moto do the work,
    then closes the connection without answering (``lose`` operations, counted down), as a network failure
    after AWS acted would. Every other request is relayed unchanged."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lose: dict[str, int] = {}  # operation (X-Amz-Target, e.g. "SageMaker.StartPipelineExecution") → count
        self.lost: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.target + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, answer_headers, data = answer.status, answer.headers.items(), answer.read()
                except urllib.error.HTTPError as err:
                    status, answer_headers, data = err.code, err.headers.items(), err.read()
                operation = self.headers.get("X-Amz-Target", "")
                if proxy.lose.get(operation, 0) > 0:
                    proxy.lose[operation] -= 1
                    proxy.lost.append(operation)
                    self.close_connection = True
                    return
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
