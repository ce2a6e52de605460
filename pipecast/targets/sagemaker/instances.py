"""Choosing an ``ml.*`` instance type for a step's resources.

SageMaker has no cpu/memory requests: a job runs on whole instances of one type. A step's
``Resources(cpu, memory, gpu, gpu_type)`` is mapped to the first instance in a small table that has at
least that many vCPUs, GiB of memory and GPUs of the asked type. Each family is listed smallest first
(single-GPU sizes before multi-GPU ones), and the first fit is chosen. A step setting ``instance_type``
overrides the table.

The table is deliberately small and documented in ``docs/targets/sagemaker.md``; the tests check every
entry against the instance types botocore's SageMaker model accepts for processing and training jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecast.compiler import ir
from pipecast.compiler.units import parse_quantity

PROCESSING = "processing"
TRAINING = "training"
BOTH = frozenset({PROCESSING, TRAINING})


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance type: its size and the job kinds SageMaker accepts it for."""

    name: str
    vcpus: int
    memory_gib: float
    gpus: int = 0
    jobs: frozenset[str] = BOTH


def _family(prefix: str, sizes: tuple[tuple[str, int, float, int], ...],
            jobs: frozenset[str] = BOTH) -> tuple[Instance, ...]:
    return tuple(Instance(f"ml.{prefix}.{size}", cpus, mem, gpus, jobs) for size, cpus, mem, gpus in sizes)


# General purpose (no GPU): the m5 family.
CPU_INSTANCES = _family("m5", (
    ("large", 2, 8, 0), ("xlarge", 4, 16, 0), ("2xlarge", 8, 32, 0), ("4xlarge", 16, 64, 0),
    ("12xlarge", 48, 192, 0), ("24xlarge", 96, 384, 0),
))

_G_SIZES = (
    ("xlarge", 4, 16, 1), ("2xlarge", 8, 32, 1), ("4xlarge", 16, 64, 1), ("8xlarge", 32, 128, 1),
    ("16xlarge", 64, 256, 1), ("12xlarge", 48, 192, 4), ("24xlarge", 96, 384, 4), ("48xlarge", 192, 768, 8),
)

# GPU families by the accelerator's short name (see gpu_key for the accepted spellings).
GPU_INSTANCES: dict[str, tuple[Instance, ...]] = {
    "t4": _family("g4dn", _G_SIZES[:6]),
    "a10g": _family("g5", _G_SIZES),
    "l4": _family("g6", _G_SIZES),
    "v100": _family("p3", (("2xlarge", 8, 61, 1), ("8xlarge", 32, 244, 4), ("16xlarge", 64, 488, 8))),
    # SageMaker accepts these two only for training jobs (botocore's ProcessingInstanceType lacks them).
    "a100": _family("p4d", (("24xlarge", 96, 1152, 8),), frozenset({TRAINING})),
    "h100": _family("p5", (("48xlarge", 192, 2048, 8),), frozenset({TRAINING})),
}

DEFAULT_GPU = "t4"  # a GPU asked for without gpu_type gets the cheapest family


def gpu_key(gpu_type: str | None) -> str:
    """The table key for a ``gpu_type`` (``"nvidia-tesla-t4"`` → ``"t4"``); unknown types come back as given."""
    if not gpu_type:
        return DEFAULT_GPU
    key = gpu_type.strip().lower()
    for prefix in ("nvidia-", "nvidia_", "tesla-", "tesla_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def choose_instance(resources: ir.Resources, job: str) -> tuple[Instance | None, str]:
    """The first listed instance that fits ``resources`` for a ``job`` kind, or ``(None, why not)``."""
    cpu = parse_quantity(resources.cpu) if resources.cpu else 0.0
    memory = parse_quantity(resources.memory) if resources.memory else 0.0
    memory_gib = (memory or 0.0) / 2**30
    if resources.gpu:
        key = gpu_key(resources.gpu_type)
        family = GPU_INSTANCES.get(key)
        if family is None:
            return None, (f"gpu_type {resources.gpu_type!r} is not in pipecast's SageMaker instance table "
                          f"(known: {sorted(GPU_INSTANCES)!r})")
        candidates = [i for i in family if i.gpus >= resources.gpu]
        kind = f"{resources.gpu} {key.upper()} GPU(s)"
    else:
        candidates = list(CPU_INSTANCES)
        kind = "no GPU"
    candidates = [i for i in candidates if i.vcpus >= (cpu or 0.0) and i.memory_gib >= memory_gib]
    if not candidates:
        return None, (f"no listed instance has {kind}, {cpu or 0:g} vCPU and {memory_gib:g} GiB of memory")
    allowed = [i for i in candidates if job in i.jobs]
    if not allowed:
        return None, f"{candidates[0].name} ({kind}) runs only {sorted(candidates[0].jobs)[0]} jobs, not {job} jobs"
    return allowed[0], ""
