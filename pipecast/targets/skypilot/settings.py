"""The vm_* targets' settings, typed once: image and artifact root, what setup installs, the VMs' resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pipecast.targets.settings import ContainerSettings, Settings, setting


def _positive(size: int) -> str | None:
    return None if size > 0 else "must be a positive number of GB"


@dataclass(frozen=True, kw_only=True)
class SkyPilotSettings(ContainerSettings):
    """Settings of the vm_aws, vm_gcp and vm_azure targets (``--set KEY=VALUE`` or ``settings={"vm_aws": ...}``)."""

    renamed: ClassVar[Mapping[str, str]] = {"workdir": "working_directory"}

    image: str | None = setting(
        None, "Docker image of steps without one (resources.image_id: docker:IMAGE); default: the VM itself",
        example="image=ghcr.io/acme/pipeline:1.0")
    working_directory: Literal[""] | str | None = setting(
        None, "local folder synced to the VM (~/sky_workdir), where the steps run and their modules are imported "
              "from; default: the pipeline's import root (relative to the folder you compile in when inside it, "
              "else absolute); '' for none", step=False, example="working_directory=examples")
    python: str = setting("python3", "Python interpreter on the VM", step=False)
    pipecast_package: str | None = setting(
        None, "pip requirement that installs pipecast on the VM; default: exactly the compiling pipecast (the "
              "wheel submit ships to ~/.pipecast/, else pipecast==VERSION from the package index)", step=False,
        example="pipecast_package=pipecast==0.1.0")
    pip_packages: tuple[str, ...] = setting([], "more pip requirements installed by setup (after the pipeline's "
                                                "requirements=)", step=False,
                                            example="'pip_packages=[\"numpy==2.1\", \"scikit-learn\"]'")
    requirements_file: str | None = setting(None, "a requirements file in the working directory, installed by "
                                                  "setup", step=False)
    use_spot: bool | None = setting(None, "spot/preemptible VMs")
    region: str | None = setting(None, "cloud region")
    zone: str | None = setting(None, "cloud zone")
    instance_type: str | None = setting(None, "instance type, e.g. m6i.large")
    disk_size: int | None = setting(None, "OS disk size in GB", check=_positive)
    accelerators: str | Mapping[str, int | float] | None = setting(
        None, "SkyPilot accelerators, e.g. 'V100:1' or {\"A100\": 8}, replacing the step's GPU request",
        example="accelerators=V100:1")


@dataclass(frozen=True, kw_only=True)
class SkyPilotConnection(Settings):
    """How submit launches (``pipecast submit -c KEY=VALUE``); checked when submit reads it."""

    mode: Literal["cluster", "jobs"] | None = setting(
        None, "'cluster' (sky.launch, one task) or 'jobs' (sky.jobs.launch, a managed job; needed for several "
              "tasks). Default: cluster for one task, jobs for several")
    cluster: str | None = setting(None, "cluster name for mode=cluster (default pipecast-<pipeline>-<run suffix>)")
    down: bool = setting(True, "tear the cluster down once idle (mode=cluster; default true)")
    idle_minutes: int = setting(10, "minutes the cluster stays up after its job, to read the final status "
                                    "(mode=cluster; default 10)")
    retry_until_up: bool = setting(False, "retry until the cloud has capacity (mode=cluster; default false)")
    job_name: str | None = setting(None, "managed job name (mode=jobs; default: the pipeline's name)")
