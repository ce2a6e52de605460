"""``pipecast stack verify``: what can be checked about a stack without running anything, and what to fix.

Checks, in order: the settings against the target; the target's SDK importable; each credential reference
resolvable and each credential chain named holding a credential; the engine's API reachable (and answering the
configured credentials where the target has a cheap probe: the Kubernetes API's ``/version``, the Docker engine);
the image registry answering; the artifact root writable (a probe file written and removed through fsspec).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipecast.errors import PipecastError
from pipecast.stacks.model import Stack

# What a submit to each Kubernetes-based target creates (verb, API group, resource), asked with a
# SelfSubjectAccessReview as `kubectl auth can-i` does.
KUBE = {"kubernetes": (("create", "batch", "jobs"), ("create", "", "configmaps")),
        "argo": (("create", "argoproj.io", "workflows"), ("create", "argoproj.io", "workflowtemplates")),
        "tekton": (("create", "tekton.dev", "pipelineruns"), ("create", "tekton.dev", "pipelines"))}
URL_KEYS = ("base_url", "url", "api_url", "host", "endpoint", "argo_server")


@dataclass(frozen=True)
class Check:
    """One check: what was checked, whether it passed, what was found and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def render(self) -> str:
        """``ok   name: detail`` or ``FIX  name: detail`` with the fix on the next line."""
        head = f"{'ok ' if self.ok else 'FIX'}  {self.name}: {self.detail}"
        return head if self.ok or not self.fix else f"{head}\n       fix: {self.fix}"


def verify_stack(stack: Stack, *, timeout: float = 10.0) -> list[Check]:
    """Every check of ``stack``; a failed one says what to fix. Nothing is run or submitted."""
    from pipecast.stacks.validate import stack_problems
    from pipecast.targets.registry import get_target

    problems = stack_problems(stack)
    checks = [Check("settings", not problems, "valid for target " + repr(stack.target) if not problems else
                    "; ".join(p.message for p in problems), "; ".join(p.fix for p in problems if p.fix))]
    try:
        target = get_target(stack.target)
    except PipecastError:
        return checks
    checks.append(_sdk(target))
    config, reference = _config(stack)
    checks += reference
    checks += [_chain(chain, stack) for chain in stack.credentials]
    if checks[1].ok and config is not None:
        checks += _api(stack, target, config, timeout)
    if stack.build.get("repository"):
        checks.append(_registry(str(stack.build["repository"]), bool(stack.build.get("insecure_registry"))))
    checks.append(_artifact_root(stack))
    return checks


def _sdk(target: Any) -> Check:
    if target.extra_installed():
        what = ", ".join(target.sdk_modules) or "nothing beyond pipecast"
        return Check("sdk", True, f"{target.name} needs {what}: importable")
    return Check("sdk", False, f"{target.name} needs {', '.join(target.sdk_modules)}, which is not installed",
                 f"python -m pip install 'pipecast[{target.extra}]'")


def _config(stack: Stack) -> tuple[dict[str, Any] | None, list[Check]]:
    from pipecast.stacks.running import stack_config
    from pipecast.stacks.secrets import is_reference

    references = {k: v for k, v in stack.config.items() if is_reference(v)}
    try:
        config = stack_config(stack)
    except PipecastError as err:
        return None, [Check("credentials", False, str(err), "set the variable or store the keyring entry")]
    if not references:
        return config, []
    named = ", ".join(f"{k}={v}" for k, v in references.items())
    return config, [Check("credentials", True, f"{named}: found")]


def _chain(chain: str, stack: Stack) -> Check:
    """Whether the credential chain ``chain`` holds a credential (read locally; nothing is sent)."""
    probes: dict[str, Callable[[], str | None]] = {"docker": lambda: _docker_credentials(stack), "aws": _aws,
                                                   "gcp": _gcp, "azure": _azure}
    probe = probes.get(chain)
    if probe is None:
        return Check(f"credentials {chain}", False, "unknown credential chain", "name docker, aws, gcp or azure")
    try:
        missing = probe()
    except Exception as err:  # an SDK's own error while reading its files: say it, do not crash verify
        missing = f"{type(err).__name__}: {err}"
    return Check(f"credentials {chain}", missing is None, "a credential is there" if missing is None else missing,
                 {"docker": "docker login REGISTRY", "aws": "aws configure (or AWS_PROFILE / AWS_ACCESS_KEY_ID)",
                  "gcp": "gcloud auth application-default login", "azure": "az login (or AZURE_CLIENT_ID ...)"}
                 [chain])


def _docker_credentials(stack: Stack) -> str | None:
    from pipecast.build.registry import Repository, credentials

    repository = stack.build.get("repository")
    if not repository:
        return "the stack names no build repository (--build repository=REGISTRY/NAME) to log in to"
    host = Repository.parse(str(repository)).host
    return None if credentials(host) else f"no Docker login for {host} (config.json or a credential helper)"


def _aws() -> str | None:
    import importlib.util

    if importlib.util.find_spec("boto3") is None:
        return "boto3 is not installed"
    import boto3

    return None if boto3.session.Session().get_credentials() is not None else "the AWS credential chain has none"


def _gcp() -> str | None:
    import importlib.util

    if importlib.util.find_spec("google.auth") is None:
        return "google-auth is not installed"
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as err:
        return f"no Application Default Credentials: {err}"
    return None


def _azure() -> str | None:
    import os
    import shutil

    if os.environ.get("AZURE_CLIENT_ID") or shutil.which("az"):
        return None
    return "neither AZURE_CLIENT_ID (environment credential) nor the az CLI is there"


def _api(stack: Stack, target: Any, config: dict[str, Any], timeout: float) -> list[Check]:
    if target.name == "local":
        return []
    if target.name == "local_docker":
        from pipecast.targets.local_docker import check_docker

        try:
            check_docker()
        except PipecastError as err:
            return [Check("api", False, str(err), "start Docker and install the Compose plugin")]
        return [Check("api", True, "the Docker engine and Docker Compose answer")]
    if target.name in KUBE:
        return _kube(stack, target.name, config)
    url = next((str(config[k]) for k in URL_KEYS if isinstance(config.get(k), str) and "://" in config[k]), None)
    if url is None:
        return [Check("api", True, f"not probed: {target.name} has no cheap probe here (its SDK's credential chain "
                                   "is checked at submit)")]
    return [_http(url, timeout)]


def _kube(stack: Stack, target: str, config: dict[str, Any]) -> list[Check]:
    """The Kubernetes API's /version with the configured credentials (as ``kubectl version``).

    Then whether the account may create what a submit creates (as ``kubectl auth can-i``).
    """
    from pipecast.targets.kube.client import connect

    try:
        cluster = connect(config)
        from kubernetes import client

        answer = client.VersionApi(cluster.api_client).get_code(_preload_content=False, _request_timeout=(10, 30))
        version = json.loads(answer.data).get("gitVersion", "(version not said)")
    except PipecastError as err:
        return [Check("api", False, str(err), "pass -c kubeconfig=PATH (and context=NAME)")]
    except Exception as err:  # the client's own errors: unreachable, refused, 401/403
        status = getattr(err, "status", None)
        fix = "renew the kubeconfig's credentials" if status in (401, 403) else \
            "check that the cluster runs and is reachable"
        return [Check("api", False, f"the Kubernetes API did not answer /version: {type(err).__name__}: "
                                    f"{getattr(err, 'reason', err)}", fix)]
    checks = [Check("api", True, f"Kubernetes {version} at {cluster.host} ({cluster.source})")]
    namespace = str(config.get("namespace") or stack.settings.get("namespace") or cluster.namespace or "default")
    denied, unknown = [], []
    for verb, group, resource in KUBE[target]:
        allowed = _can_i(cluster, namespace, verb, group, resource)
        what = f"{verb} {resource}{'.' + group if group else ''}"
        if allowed is False:
            denied.append(what)
        elif allowed is None:
            unknown.append(what)
    if denied:
        checks.append(Check("permissions", False, f"your account may not {', '.join(denied)} in namespace "
                                                  f"{namespace!r}", "ask your cluster admin for a Role granting "
                                                                    "them, or use another namespace (-c namespace=)"))
    else:
        said = f" (not answered for {', '.join(unknown)})" if unknown else ""
        checks.append(Check("permissions", True, f"may create what a run creates in namespace {namespace!r}{said}"))
    return checks


def _can_i(cluster: Any, namespace: str, verb: str, group: str, resource: str) -> bool | None:
    """A SelfSubjectAccessReview's answer; None when the cluster does not answer one."""
    from kubernetes import client

    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                            "resource": resource}}}
    try:
        answer = client.AuthorizationV1Api(cluster.api_client).create_self_subject_access_review(
            body, _preload_content=False, _request_timeout=(10, 30))
        return bool((json.loads(answer.data).get("status") or {}).get("allowed"))
    except Exception:  # 403 on the review itself, or no such API: the submit's own writes will tell
        return None


def _http(url: str, timeout: float) -> Check:
    """Whether ``url`` answers at all (reachability only: each target authenticates its own way at submit)."""
    import urllib.error
    import urllib.request

    from pipecast.redaction import redact_credentials

    shown = redact_credentials(url)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        return Check("api", False, f"{shown} is not reachable: {getattr(err, 'reason', err)}",
                     "check the URL (-c) and that the server runs")
    if status >= 500:
        return Check("api", False, f"{shown} answered HTTP {status}", "check the server's health")
    return Check("api", True, f"{shown} answers (HTTP {status})")


def _registry(repository: str, insecure: bool) -> Check:
    from pipecast.build.registry import manifest_digest
    from pipecast.errors import BuildError

    try:
        manifest_digest(repository, "pipecast-verify-" + secrets.token_hex(4), insecure=insecure)
    except BuildError as err:
        return Check("registry", False, str(err).split("\n")[0], err.fix or "")
    return Check("registry", True, f"{repository}: the registry answers with your credentials (pushing is "
                                   "checked when an image is built)")


def _artifact_root(stack: Stack) -> Check:
    """Write and remove a probe file under the artifact root through fsspec."""
    from pipecast.runtime.artifacts import ArtifactStore, default_root

    root = stack.artifact_root or stack.settings.get("artifact_root")
    if not root:
        if stack.target not in ("local", "local_docker"):
            return Check("artifact root", True, "none set: the target's default (see its page)")
        root = default_root()
    try:
        store = ArtifactStore(str(root))
        probe = f"{store.uri.rstrip('/')}/.pipecast-verify-{secrets.token_hex(4)}"
        import fsspec

        fs, path = fsspec.core.url_to_fs(probe)
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.pipe_file(path, b"pipecast stack verify\n")
        fs.rm_file(path)
    except Exception as err:  # any backend's error (ImportError for a missing fsspec backend, permission...)
        return Check("artifact root", False, f"{root}: cannot write: {type(err).__name__}: {err}",
                     "check the URI and your permission to write there (and the fsspec backend, e.g. s3fs)")
    return Check("artifact root", True, f"{store.uri}: writable")
