"""Engine name rules, applied in one place, with collision detection.

Each rule turns a pipecast node name (``load_data_2``) into a name the engine accepts
(``load-data-2`` for Kubernetes). Names too long for the engine are cut and given a short hash of
the original so they stay unique and stable. Two steps that map to the same engine name are an error,
never a silent merge.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipecast.errors import Problem, ValidationError

# pipecast's own rule for the names a user gives (pipelines, steps, outputs): they become folder and file
# names in the artifact store and the source of every engine's names, so they cannot hold a path.
PIPECAST_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or '_', with no '..'"
_PIPECAST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def name_problem(kind: str, name: object) -> str | None:
    """Why ``name`` breaks pipecast's name rule (``kind`` says what it names), or None when it is valid."""
    if isinstance(name, str) and _PIPECAST_NAME.fullmatch(name) and ".." not in name:
        return None
    suggestion = re.sub(r"[^A-Za-z0-9_.-]+|\.{2,}", "_", str(name)).strip("_.-")
    if not suggestion or not re.match(r"[A-Za-z_]", suggestion):
        suggestion = f"_{suggestion}"
    return (f"{kind} {name!r} is not allowed: names hold only {PIPECAST_NAME_RULE} (they become folder names "
            f"in the artifact store and names in every engine); use e.g. {suggestion!r}")


@dataclass(frozen=True, slots=True)
class NameRule:
    """How one engine spells names."""

    name: str
    description: str
    convert: Callable[[str], str]
    max_length: int
    joiner: str = "-"

    def apply(self, original: str) -> str:
        """Convert ``original`` and fit it into ``max_length`` (with a hash suffix when cut)."""
        converted = self.convert(original)
        if len(converted) <= self.max_length:
            return converted
        digest = hashlib.sha256(original.encode()).hexdigest()[:6]
        head = self.convert(converted[: self.max_length - len(digest) - 1])
        return f"{head}{self.joiner}{digest}"


def _dns1123(text: str) -> str:
    lowered = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    lowered = re.sub(r"-{2,}", "-", lowered).strip("-")
    return lowered or "x"


def _airflow(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


def _github(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"_{cleaned}"


def _sagemaker(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text) or "step"


def _sagemaker_pipeline(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "pipeline"


def _eventbridge_schedule(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text) or "schedule"


def _azureml(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]", "_", text.lower())
    return cleaned if re.match(r"[a-z_]", cleaned) else f"_{cleaned}"


def _compose(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.-]", "-", text.lower()).strip("-._")
    return cleaned or "step"


def _skypilot(text: str) -> str:
    # SkyPilot task names: alphanumeric runs joined by one separator of [._-] (no "---" or "___").
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)
    cleaned = re.sub(r"[._-]+", lambda run: run.group(0)[0], cleaned).strip("._-")
    return cleaned or "task"


RULES: dict[str, NameRule] = {
    rule.name: rule
    for rule in (
        NameRule("dns1123_label", "Kubernetes DNS-1123 label: [a-z0-9-], starts and ends alphanumeric",
                 _dns1123, 63),
        NameRule("airflow_task_id", "Airflow task id: [A-Za-z0-9_.-]", _airflow, 250, "_"),
        NameRule("github_job_id", "GitHub job id: [A-Za-z0-9_-], starts with a letter or _", _github, 100, "_"),
        NameRule("sagemaker_step", "SageMaker step name: [A-Za-z0-9_-]", _sagemaker, 64),
        NameRule("sagemaker_pipeline", "SageMaker pipeline name: [A-Za-z0-9-], starts and ends alphanumeric",
                 _sagemaker_pipeline, 256),
        NameRule("eventbridge_schedule", "EventBridge Scheduler schedule name: [A-Za-z0-9_.-]",
                 _eventbridge_schedule, 64),
        NameRule("azureml_node", "Azure ML node name: [a-z0-9_], starts with a letter or _", _azureml, 255, "_"),
        NameRule("compose_service", "Compose service name: [a-z0-9_.-]", _compose, 63),
        NameRule("skypilot_task", "SkyPilot task name: [A-Za-z0-9] runs joined by one of [._-]", _skypilot, 63),
    )
}

# Engines that use a rule above, so targets ask by engine name.
ENGINE_RULES = {
    "kubernetes": "dns1123_label",
    "kubeflow": "dns1123_label",
    "vertex": "dns1123_label",
    "tekton": "dns1123_label",
    "argo": "dns1123_label",
    "airflow": "airflow_task_id",
    "github": "github_job_id",
    "sagemaker": "sagemaker_step",
    "azureml": "azureml_node",
    "local_docker": "compose_service",
    "vm_aws": "skypilot_task",
    "vm_gcp": "skypilot_task",
    "vm_azure": "skypilot_task",
}


def rule_for(engine_or_rule: str) -> NameRule:
    """The rule for an engine (``"tekton"``) or a rule name (``"dns1123_label"``)."""
    return RULES[ENGINE_RULES.get(engine_or_rule, engine_or_rule)]


def engine_names(
    engine_or_rule: str,
    names: Sequence[str],
    *,
    locations: Mapping[str, str] | None = None,
    target: str | None = None,
) -> dict[str, str]:
    """Map each name to its engine name; raise ValidationError if two map to the same one."""
    rule = rule_for(engine_or_rule)
    mapping: dict[str, str] = {}
    taken: dict[str, str] = {}
    problems = []
    for original in names:
        converted = rule.apply(original)
        if converted in taken:
            other = taken[converted]
            problems.append(Problem(
                f"steps {other!r} and {original!r} both become {converted!r} under the {rule.description} rule",
                step=original, location=(locations or {}).get(original), target=target,
                fix="rename one of them with @step(name=...) or .with_options(name=...)",
            ))
            continue
        taken[converted] = original
        mapping[original] = converted
    if problems:
        raise ValidationError(problems, summary="engine names collide")
    return mapping


def pipeline_resource_name(name: str, suffix: str = "") -> str:
    """A DNS-1123 name for a pipeline-level resource (``train`` → ``train-pipeline``)."""
    return rule_for("dns1123_label").apply(f"{name}{suffix}")
