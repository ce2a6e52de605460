"""A Job "controller" for the fake API server: each created Job's pod runs as a local process.

It plays what the kubelet and the Job controller do, as documented, for the fields the kubernetes target
emits: ``$(VAR)`` expansion of ``command``/``args``/``env`` values (the kubelet's algorithm, with the
service-link variables, from ``tests/helpers/kube_semantics.py``), env from ``value``, ``fieldRef`` (pod
labels, namespace; never expanded) and ``secretKeyRef`` (Secrets stored in the fake; never expanded),
ConfigMap volumes (written to a folder and the mount path mapped onto it), ``backoffLimit`` with pod
backoff, ``spec.suspend``, ``podFailurePolicy`` exit-code rules, pod ``activeDeadlineSeconds``, and
status as the real controller reports it (``active``/``succeeded``/``failed`` and Complete/Failed
conditions). Deleting a Job kills its process; Jobs owned by a deleted Job are deleted too (the garbage
collector). A PersistentVolumeClaim is mounted at its own path (the test's artifact root is a local path).
Each try is also a Pod object (``<job>-<5 characters>``, the template's labels plus the Job controller's
``batch.kubernetes.io/job-name``), running, then terminated with the process's exit code, whose container log
is what the process writes to stdout and stderr, line by line as the kubelet keeps it (``pipecast runs logs``).
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipecast.targets.kubernetes import contract
from tests.helpers.cases import env_with_cases
from tests.helpers.fake_kube import FakeKube
from tests.helpers.kube_semantics import kubelet_expand

WAIT_LIMIT = 180.0  # no Job runs longer than this in a test


def _set_status(fake: FakeKube, collection: str, name: str, status: dict[str, Any]) -> None:
    """Set a Job's status unless it was deleted meanwhile (then there is nothing to report)."""
    try:
        fake.set_status(collection, name, status)
    except KeyError:
        pass


_FIELD_LABEL = re.compile(r"^metadata\.labels\['([^']+)'\]$")


def field_label(field_path: str) -> str | None:
    """The label a downward-API ``fieldPath`` reads (``metadata.labels['x']`` → ``x``), else None."""
    match = _FIELD_LABEL.match(field_path)
    return match.group(1) if match else None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobController:
    """Register with ``fake.on_create("jobs", controller)``; ``processes`` records every pod's argv and env."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None, backoff: float = 0.5) -> None:
        """``extra_env`` is given to every pod, e.g. ``KUBECONFIG`` standing in for in-cluster credentials."""
        self.workdir = workdir
        self.base_env = {k: v for k, v in env_with_cases().items() if not k.startswith("KUBERNETES_")}
        self.base_env.update(extra_env or {})
        self.backoff = backoff
        self.pods: list[dict[str, Any]] = []  # {"job", "argv", "env", "returncode", "stdout", "stderr"}
        self.lock = threading.Lock()

    # -- the controller ---------------------------------------------------------------------------
    def __call__(self, fake: FakeKube, job: dict[str, Any]) -> None:
        namespace = job["metadata"]["namespace"]
        collection = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        name = job["metadata"]["name"]
        spec = job["spec"]
        backoff_limit = spec.get("backoffLimit", 6)
        failed = 0
        _set_status(fake, collection, name, {"startTime": _now(), "active": 0})
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            current = self._wait_unsuspended(fake, collection, name, deadline)
            if current is None:
                return
            _set_status(fake, collection, name, {"active": 1})
            code, reason = self._run_pod(fake, current, collection)
            if code is None:
                return  # the Job was deleted while its pod ran
            if code == 0:
                _set_status(fake, collection, name, {"active": 0, "succeeded": 1, "completionTime": _now(),
                                                   "conditions": [self._condition("SuccessCriteriaMet"),
                                                                  self._condition("Complete")]})
                return
            failed += 1
            _set_status(fake, collection, name, {"active": 0, "failed": failed})
            if self._fail_job_rule(spec, code):
                _set_status(fake, collection, name, {"conditions": [self._condition(
                    "Failed", "PodFailurePolicy", f"Container exited with code {code} matching a FailJob rule")]})
                return
            if failed > backoff_limit:
                _set_status(fake, collection, name, {"conditions": [self._condition(
                    "Failed", reason or "BackoffLimitExceeded", "Job has reached the specified backoff limit")]})
                return
            time.sleep(min(self.backoff * 2 ** (failed - 1), self.backoff * 36))  # 10 s doubling to 6 min, scaled
        raise AssertionError(f"Job {name!r} ran longer than {WAIT_LIMIT}s")

    @staticmethod
    def _condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
        return {"type": kind, "status": "True", "reason": reason or kind, "message": message,
                "lastTransitionTime": _now()}

    @staticmethod
    def _fail_job_rule(spec: dict[str, Any], code: int) -> bool:
        for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes")
            if rule.get("action") == "FailJob" and codes and codes.get("operator") == "In" \
                    and code in codes.get("values", []):
                return True
        return False

    def _wait_unsuspended(self, fake: FakeKube, collection: str, name: str,
                          deadline: float) -> dict[str, Any] | None:
        while time.monotonic() < deadline:
            current = fake.get(collection, name)
            if current is None:
                return None
            if not current["spec"].get("suspend"):
                return current
            time.sleep(0.02)
        return None

    # -- one pod ----------------------------------------------------------------------------------
    def _run_pod(self, fake: FakeKube, job: dict[str, Any], collection: str) -> tuple[int | None, str]:
        name = job["metadata"]["name"]
        pod = job["spec"]["template"]
        labels = {**pod["metadata"].get("labels", {}), contract.JOB_NAME_LABEL: name, "job-name": name,
                  "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
        mounts = self._mounts(fake, job)
        (container,) = pod["spec"]["containers"]
        variables = self._env(fake, job, container, labels)
        argv = [self._mounted(kubelet_expand(a, variables), mounts)
                for a in [*container.get("command", []), *container.get("args", [])]]
        if Path(argv[0]).name in ("python", "python3"):
            argv[0] = sys.executable
        env = {**self.base_env, **{k: self._mounted(v, mounts) for k, v in variables.items()}}
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        record: dict[str, Any] = {"job": name, "argv": argv, "env": variables, "returncode": None, "stdout": "",
                                  "stderr": "", "started": time.monotonic(), "ended": None}
        with self.lock:
            self.pods.append(record)
        namespace = job["metadata"]["namespace"]
        pod_name = fake.start_pod(namespace, f"{name}-", labels, [container["name"]])
        limit = pod["spec"].get("activeDeadlineSeconds")
        started = time.monotonic()
        reason = ""
        output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        log = (namespace, pod_name, container["name"])
        readers = [threading.Thread(target=self._read, args=(fake, log, stream, output[key]), daemon=True)
                   for key, stream in (("stdout", process.stdout), ("stderr", process.stderr))]
        for reader in readers:
            reader.start()
        while any(reader.is_alive() for reader in readers):
            readers[0].join(0.05)
            if fake.get(collection, name) is None:  # deleted: SIGTERM, then SIGKILL after a grace period
                process.terminate()
                for reader in readers:
                    reader.join(5)
                process.kill()
                for reader in readers:
                    reader.join()
                process.wait()
                record.update(returncode="deleted", stdout="".join(output["stdout"]),
                              stderr="".join(output["stderr"]))
                fake.end_pod(namespace, pod_name, 143)
                return None, ""
            if limit is not None and time.monotonic() - started > limit:
                process.kill()
                reason = "DeadlineExceeded"
        process.wait()
        record.update(returncode=process.returncode, stdout="".join(output["stdout"]),
                      stderr="".join(output["stderr"]), ended=time.monotonic())
        fake.end_pod(namespace, pod_name, process.returncode)
        return process.returncode, reason

    @staticmethod
    def _read(fake: FakeKube, log: tuple[str, str, str], stream: Any, into: list[str]) -> None:
        """Copy a process's output into its container log as it comes, line by line (stdout and stderr mix)."""
        for line in stream:
            into.append(line)
            fake.append_log(*log, line)

    def _env(self, fake: FakeKube, job: dict[str, Any], container: dict[str, Any],
             labels: dict[str, str]) -> dict[str, str]:
        namespace = job["metadata"]["namespace"]
        variables: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                variables[item["name"]] = kubelet_expand(item["value"], variables)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                label = field_label(path)
                if label is not None:
                    variables[item["name"]] = labels.get(label, "")
                elif path == "metadata.namespace":
                    variables[item["name"]] = namespace
                else:
                    raise AssertionError(f"fieldRef {path!r} is not simulated")
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = fake.get(f"/api/v1/namespaces/{namespace}/secrets", ref["name"])
                if secret is None or ref["key"] not in secret.get("data", {}):
                    raise AssertionError(f"secret {ref['name']!r} key {ref['key']!r} is missing: the pod would not "
                                         f"start (CreateContainerConfigError)")
                variables[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return variables

    def _mounts(self, fake: FakeKube, job: dict[str, Any]) -> dict[str, str]:
        """ConfigMap volumes written to a folder here: mount path → that folder."""
        pod = job["spec"]["template"]["spec"]
        namespace = job["metadata"]["namespace"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mapped: dict[str, str] = {}
        for mount in pod["containers"][0].get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                configmap = fake.get(f"/api/v1/namespaces/{namespace}/configmaps", volume["configMap"]["name"])
                assert configmap is not None, f"ConfigMap {volume['configMap']['name']!r} does not exist"
                folder = self.workdir / job["metadata"]["name"] / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                for key, text in configmap.get("data", {}).items():
                    (folder / key).write_text(text, encoding="utf-8")
                for key, encoded in configmap.get("binaryData", {}).items():
                    (folder / key).write_bytes(base64.b64decode(encoded))
                mapped[mount["mountPath"].rstrip("/")] = str(folder)
            elif "persistentVolumeClaim" not in volume:
                raise AssertionError(f"volume {volume!r} is not simulated")
        return mapped

    @staticmethod
    def _mounted(text: str, mounts: dict[str, str]) -> str:
        for path, folder in mounts.items():
            if text == path or text.startswith(path + "/"):
                return folder + text[len(path):]
        return text


def collect_garbage(fake: FakeKube, namespace: str, stop: threading.Event) -> None:
    """Delete Jobs whose owner Job is gone, as the garbage collector does (run in a thread until ``stop``)."""
    collection = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    while not stop.wait(0.05):
        names = {j["metadata"]["name"] for j in fake.items(collection)}
        for job in fake.items(collection):
            owners = [o["name"] for o in job["metadata"].get("ownerReferences", []) if o.get("kind") == "Job"]
            if owners and not any(o in names for o in owners):
                with fake.lock:
                    fake.objects.pop(f"{collection}/{job['metadata']['name']}", None)


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret manifest with ``data`` base64-encoded, to POST to the fake."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

