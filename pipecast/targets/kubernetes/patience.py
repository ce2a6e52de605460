"""The driver's API calls, patient with an API server that is briefly away.

Every call already goes through :func:`pipecast.targets.kube.client.call_api`, which retries a lost answer a
few times within seconds. An API server restart, a control-plane upgrade or a network partition lasts longer
than that, and a driver that gave up would leave its step Jobs running unwatched. :class:`PatientApi` keeps
trying such calls with a doubling wait (capped) for up to ``patience`` seconds; then, and for any error that
waiting cannot mend (401, 403, 404, 422, ...), the error reaches the driver's ``main``, which exits with
:data:`~pipecast.targets.kubernetes.contract.EXIT_INFRASTRUCTURE` so the driver Job starts a new pod that
adopts the run (never the "pipeline failed" exit code).

Every driver call can be repeated safely: creates read a 409 as "done already", patches are merge patches
of fixed values, reads and deletes are idempotent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipecast.errors import PipecastError, SubmitError

API_PATIENCE = 300.0  # seconds the driver rides out an unreachable API server before its pod gives up
FIRST_WAIT = 1.0  # seconds before the first try again, doubled each time
MAX_WAIT = 30.0
# Answers that say "later": timeouts, throttling, an API server or its proxy unavailable (client-go retries
# these as well, k8s.io/client-go/rest/request.go checkWait / IsRetryableError).
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


def is_transient(err: PipecastError) -> bool:
    """Whether waiting may mend ``err``: no answer at all (connection refused, reset, timed out) or a "later"."""
    from pipecast.targets.kube.client import KubeError

    if isinstance(err, KubeError):
        return err.status in TRANSIENT_STATUSES
    return isinstance(err, SubmitError)  # call_api's "no answer from the Kubernetes API server"


class PatientApi:
    """A :class:`~pipecast.targets.kubernetes.driver.JobApi` whose calls ride out a transient outage."""

    def __init__(self, api: Any, stop: threading.Event, log: Callable[[str], None], *,
                 patience: float = API_PATIENCE, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.stop = stop
        self.log = log
        self.patience = patience
        self.clock = clock

    @property
    def namespace(self) -> str | None:
        """The namespace of the wrapped API (where the step Jobs go)."""
        return getattr(self.api, "namespace", None)

    def _call(self, what: str, send: Callable[[], T]) -> T:
        deadline: float | None = None
        wait = FIRST_WAIT
        while True:
            try:
                return send()
            except PipecastError as err:
                now = self.clock()
                deadline = now + self.patience if deadline is None else deadline
                if not is_transient(err) or now >= deadline or self.stop.is_set():
                    raise
                self.log(f"{what}: {err}; trying again in {wait:g}s (for up to {self.patience:g}s in all)")
                if self.stop.wait(min(wait, max(deadline - now, 0.0))):
                    raise
                wait = min(wait * 2, MAX_WAIT)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``."""
        return self._call(f"create {body['kind']} {body['metadata'].get('name')!r}", lambda: self.api.create(body))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """Read one object."""
        return self._call(f"read {kind} {name!r}", lambda: self.api.get(kind, name))

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch one object."""
        return self._call(f"patch {kind} {name!r}", lambda: self.api.patch(kind, name, body))

    def list(self, kind: str, selector: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` whose labels match ``selector``."""
        return self._call(f"list {kind} {selector!r}", lambda: self.api.list(kind, selector))

    def delete(self, kind: str, name: str, propagation: str = "Background") -> None:
        """Delete one object."""
        self._call(f"delete {kind} {name!r}", lambda: self.api.delete(kind, name, propagation=propagation))
