"""The log of an Azure ML pipeline job: the job's stream (``MLClient.jobs.stream``), as lines.

``jobs.stream`` prints the job's execution log (run id, studio link, the log files' new text as they grow, and
the execution summary) to ``sys.stdout`` until the job ends. It runs here in a thread of its own, and what that
thread writes to ``sys.stdout`` is handed over line by line, while everything else written there passes
through. The stream is the pipeline job's: Azure ML keeps each step's own log on its child job, which the
stream does not show, so ``--step`` is refused with where to find it (the studio).
"""

from __future__ import annotations

import io
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipecast.errors import SubmitError
from pipecast.runs.logs import Deadline, LineBuffer

if TYPE_CHECKING:
    from pipecast.targets.azureml.submit import AzureMLRun

_END = object()


class _ThreadOutput(io.TextIOBase):
    """``sys.stdout`` while a stream runs: the stream thread's text goes to a queue, other threads' to ``target``."""

    def __init__(self, target: Any, chunks: queue.Queue[Any]) -> None:
        super().__init__()
        self.target = target
        self.chunks = chunks
        self.thread: int | None = None

    def write(self, text: str) -> int:
        if threading.get_ident() == self.thread:
            self.chunks.put(text)
            return len(text)
        written: int = self.target.write(text)
        return written

    def flush(self) -> None:
        if threading.get_ident() != self.thread:
            self.target.flush()


def job_stream(run: AzureMLRun, step: str | None, follow: bool, timeout: float | None) -> Iterator[str]:
    """The pipeline job's stream, as lines; without ``follow`` only for a job that has ended."""
    if step is not None:
        raise SubmitError(f"Azure ML streams the pipeline job's log, not one step's: a step's own log (its child "
                          f"job's std_log.txt) is in the studio{f' ({run.url})' if run.url else ''}; leave out "
                          "--step to read the job's stream")
    if not follow:
        status = run.fetch_status()
        if not status.finished:
            raise SubmitError(f"Azure ML job {run.engine_run_id!r} is {status.value}: its stream runs until the job "
                              "ends; pass --follow to print it as it comes")
    return _stream(run, Deadline(timeout))


def _stream(run: AzureMLRun, deadline: Deadline) -> Iterator[str]:
    chunks: queue.Queue[Any] = queue.Queue()
    output = _ThreadOutput(sys.stdout, chunks)
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            run.client.jobs.stream(run.engine_run_id)
        except BaseException as err:  # a failed job raises once its log is printed: the log says why
            failure.append(err)
        finally:
            chunks.put(_END)

    thread = threading.Thread(target=stream, name="pipecast-azureml-stream", daemon=True)
    previous, sys.stdout = sys.stdout, output
    buffer = LineBuffer()
    try:
        thread.start()
        output.thread = thread.ident
        while True:
            try:
                chunk = chunks.get(timeout=max(0.01, min(1.0, deadline.end - time.monotonic())))
            except queue.Empty:
                if deadline.expired():
                    yield from buffer.rest()
                    yield deadline.message(f"Azure ML job {run.engine_run_id!r}")
                    return
                continue
            if chunk is _END:
                break
            yield from buffer.feed(chunk)
        yield from buffer.rest()
    finally:
        if sys.stdout is output:
            sys.stdout = previous
    from azure.ai.ml.exceptions import JobException

    if failure and not isinstance(failure[0], JobException):  # a failed job is in its log; anything else is not
        raise SubmitError(f"cannot stream Azure ML job {run.engine_run_id!r}: {failure[0]}")

