"""Finding targets: the entry-point group ``pipecast.targets`` (built-ins are registered there too).

Loading a target imports only its module, never its engine SDK, so listing targets stays fast. A built-in name
loads without reading any distribution's entry points (that scan costs ~60 ms with a full environment); the
scan runs only for a name that is not built in, once per process (``target_paths`` is cached).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from functools import cache, lru_cache

from pipecast.errors import PipecastError, TargetNotFoundError
from pipecast.targets.base import Target

GROUP = "pipecast.targets"

# The built-ins, also declared as entry points in pyproject.toml; used as-is when pipecast runs from a
# source tree that was never installed (so its entry points are not visible).
BUILTIN: dict[str, str] = {
    "local": "pipecast.targets.local:LocalTarget",
    "airflow": "pipecast.targets.airflow:AirflowTarget",
    "kubeflow": "pipecast.targets.kubeflow:KubeflowTarget",
    "vertex": "pipecast.targets.vertex:VertexTarget",
    "tekton": "pipecast.targets.tekton:TektonTarget",
    "argo": "pipecast.targets.argo:ArgoTarget",
    "sagemaker": "pipecast.targets.sagemaker:SageMakerTarget",
    "azureml": "pipecast.targets.azureml:AzureMLTarget",
    "github": "pipecast.targets.github:GitHubTarget",
    "kubernetes": "pipecast.targets.kubernetes:KubernetesTarget",
    "local_docker": "pipecast.targets.local_docker:LocalDockerTarget",
    "vm_aws": "pipecast.targets.skypilot:VmAwsTarget",
    "vm_gcp": "pipecast.targets.skypilot:VmGcpTarget",
    "vm_azure": "pipecast.targets.skypilot:VmAzureTarget",
    "hyperai": "pipecast.targets.hyperai:HyperAITarget",
}


@cache
def _exists(path: str) -> bool:
    try:
        return importlib.util.find_spec(path.partition(":")[0]) is not None
    except ImportError:
        return False


@lru_cache(maxsize=1)
def target_paths() -> dict[str, str]:
    """Every registered target name mapped to its ``module:Class`` path (built-ins not yet built are left out)."""
    from importlib.metadata import entry_points  # ~25 ms to import; only a name that is not built in needs it

    paths = {name: path for name, path in BUILTIN.items() if _exists(path)}
    for ep in entry_points(group=GROUP):
        if ep.value.startswith("pipecast.") and not _exists(ep.value):
            continue  # a built-in this installation does not have yet
        known = paths.get(ep.name)
        if known is not None and known != ep.value and ep.value.split(":")[0].split(".")[0] != "pipecast":
            raise PipecastError(
                f"two packages register target {ep.name!r}: {known!r} and {ep.value!r}; uninstall one of them"
            )
        paths[ep.name] = ep.value
    return dict(sorted(paths.items()))


def get_target(name: str) -> Target:
    """Load and instantiate the target registered as ``name``."""
    builtin = BUILTIN.get(name)
    if builtin is not None and _exists(builtin):
        return _load(builtin)()
    paths = target_paths()
    path = paths.get(name)
    if path is None:
        close = difflib.get_close_matches(name, list(paths), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TargetNotFoundError(f"unknown target {name!r}.{hint} Known targets: {', '.join(paths)}")
    return _load(path)()


@cache
def _load(path: str) -> type[Target]:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as err:
        raise PipecastError(f"target {path!r} failed to load: {type(err).__name__}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise PipecastError(f"{path!r} registered under {GROUP!r} is not a pipecast Target subclass")
    return cls


def all_targets() -> list[Target | PipecastError]:
    """Every registered target, by name; one that fails to load is returned as its error."""
    loaded: list[Target | PipecastError] = []
    for name in target_paths():
        try:
            loaded.append(get_target(name))
        except PipecastError as err:
            err.target_name = name  # type: ignore[attr-defined]  # tagged for `pipecast targets` (listing.py)
            loaded.append(err)
    return loaded
