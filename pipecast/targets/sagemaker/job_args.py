"""The SageMaker escape hatch: ``processor_args`` and ``estimator_args``, job arguments pipecast does not model.

Keys are the sagemaker SDK's argument names (``Processor``/``Estimator``, as ZenML's settings pass them);
each is lowered where SageMaker's CreateProcessingJob / CreateTrainingJob request (the step's ``Arguments`` in
the pipeline definition) holds it: VPC ``NetworkConfig``/``VpcConfig``, ``VolumeKmsKeyId``,
``OutputDataConfig.KmsKeyId``, ``Tags``, managed spot training. Values are checked with the limits of
botocore's SageMaker model (service-2.json); the tests validate the definitions against AWS's published schema.
Arguments pipecast writes itself are refused with the setting to use instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipecast.targets.sagemaker.instances import PROCESSING, TRAINING

# botocore SageMaker model: SubnetId / SecurityGroupId ([-0-9a-zA-Z]+, at most 32), Subnets 1-16,
# SecurityGroupIds 1-5 (the API requires both lists in a VpcConfig), KmsKeyId ([a-zA-Z0-9:/_-]*, at most 2048),
# TagKey (1-128) and TagValue (0-256) of [\p{L}\p{Z}\p{N}_.:/=+\-@]*, at most 50 tags, aws: keys reserved.
_VPC_ID = re.compile(r"[-0-9a-zA-Z]{1,32}")
_KMS_KEY = re.compile(r"[a-zA-Z0-9:/_-]{1,2048}")
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
MAX_TAGS = 50
MAX_WAIT = 2_419_200  # MaxWaitTimeInSeconds: SageMaker's limit for managed spot training (28 days)
DEFAULT_MAX_RUNTIME = 86_400  # SageMaker's MaxRuntimeInSeconds when a request sets none

_FLAGS = ("enable_network_isolation", "encrypt_inter_container_traffic", "use_spot_instances")
_NETWORK = ("subnets", "security_group_ids", "enable_network_isolation", "encrypt_inter_container_traffic")
PROCESSOR_ARGS = ("network_config", "volume_kms_key", "tags")
ESTIMATOR_ARGS = (*_NETWORK, "volume_kms_key", "output_kms_key", "tags", "use_spot_instances", "max_wait",
                  "checkpoint_s3_uri")

_OWNED_BOTH = {
    "role": "use the role_arn setting", "image_uri": "use @step(image=...) or the image setting",
    "instance_type": "use the instance_type setting or @step(resources=...)",
    "instance_count": "use the instance_count setting", "sagemaker_session": "pipecast writes the definition",
    "base_job_name": "SageMaker names a pipeline's jobs", "env": "use @step(env=...)",
    "environment": "use @step(env=...)", "entrypoint": "pipecast's runtime command runs the step",
    "command": "pipecast's runtime command runs the step", "arguments": "pipecast's runtime command runs the step",
    "code": "the step's image holds its code", "entry_point": "the step's image holds its code",
    "source_dir": "the step's image holds its code", "inputs": "inputs travel through the artifact root",
    "outputs": "outputs travel through the artifact root", "hyperparameters": "step inputs are the parameters",
}
OWNED: dict[str, dict[str, str]] = {
    PROCESSING: {**_OWNED_BOTH, "volume_size_in_gb": "use the volume_size_gb setting",
                 "max_runtime_in_seconds": "use @step(timeout=...) (pipecast bounds every try with it)",
                 "output_kms_key": "a processing step has no output SageMaker uploads: pipecast writes outputs to "
                                   "the artifact root itself, so encrypt its bucket (SSE-KMS default encryption)",
                 **dict.fromkeys(_NETWORK, "put it in network_config")},
    TRAINING: {**_OWNED_BOTH, "volume_size": "use the volume_size_gb setting",
               "max_run": "use @step(timeout=...) (pipecast bounds every try with it)",
               "output_path": "pipecast sets the training output path under the artifact root",
               "network_config": "pass subnets, security_group_ids, enable_network_isolation and "
                                 "encrypt_inter_container_traffic as estimator arguments"},
}
SDK_CLASS = {PROCESSING: "Processor", TRAINING: "Estimator"}
SETTING = {PROCESSING: "processor_args", TRAINING: "estimator_args"}


def _texts_problem(key: str, value: Any, pattern: re.Pattern[str], most: int, what: str) -> str | None:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        return f"has {key!r} that is not a non-empty list of text"
    if len(value) > most:
        return f"has {len(value)} {key!r}; SageMaker takes at most {most}"
    bad = [v for v in value if not pattern.fullmatch(v)]
    return f"has {key!r} {bad!r} that are not {what}" if bad else None


def _network_problem(value: Mapping[str, Any]) -> str | None:
    for key, item in value.items():
        if key not in _NETWORK:
            return f"has {key!r}, which is not a NetworkConfig argument ({', '.join(_NETWORK)})"
        problem = _value_problem(key, item) if key in _FLAGS else None
        if problem:
            return problem
    if ("subnets" in value) != ("security_group_ids" in value):
        return "has only one of 'subnets' and 'security_group_ids'; a SageMaker VpcConfig needs both"
    for key, most in (("subnets", 16), ("security_group_ids", 5)):
        if key in value:
            problem = _texts_problem(key, value[key], _VPC_ID, most, "subnet or security group ids")
            if problem:
                return problem
    return None


def tags_problem(value: Any) -> str | None:
    """Why ``value`` (a mapping, or a list of ``{"Key", "Value"}``) cannot be SageMaker tags, or None."""
    tags = as_tags(value)
    if tags is None:
        return "has 'tags' that are neither a mapping of text nor a list of {'Key': ..., 'Value': ...}"
    if len(tags) > MAX_TAGS:
        return f"has {len(tags)} tags; SageMaker takes at most {MAX_TAGS}"
    for tag in tags:
        key, text = tag["Key"], tag["Value"]
        if not 1 <= len(key) <= 128 or not _TAG_TEXT.fullmatch(key) or key.lower().startswith("aws:"):
            return f"has tag key {key!r}: 1-128 letters, digits, spaces and _.:/=+-@, not starting with aws:"
        if len(text) > 256 or not _TAG_TEXT.fullmatch(text):
            return f"has tag value {text!r}: at most 256 letters, digits, spaces and _.:/=+-@"
    return None


def as_tags(value: Any) -> list[dict[str, str]] | None:
    """``value`` as SageMaker's ``Tags`` list, or None if it is neither form."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple) and all(isinstance(t, Mapping) and set(t) == {"Key", "Value"}
                                                 for t in value):
        items = [(t["Key"], t["Value"]) for t in value]
    else:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
        return None
    return [{"Key": k, "Value": v} for k, v in items]


def _value_problem(key: str, value: Any) -> str | None:
    if key == "network_config":
        return _network_problem(value) if isinstance(value, Mapping) else f"has {key!r} that is not a mapping"
    if key in ("volume_kms_key", "output_kms_key"):
        ok = isinstance(value, str) and _KMS_KEY.fullmatch(value) is not None
        return None if ok else f"has {key!r} that is not a KMS key id, ARN or alias"
    if key == "tags":
        return tags_problem(value)
    if key in _FLAGS:
        if key == "enable_network_isolation" and value is True:
            return (f"has {key!r} true: a network-isolated job cannot reach S3, where pipecast's steps read and "
                    "write the artifact root")
        return None if isinstance(value, bool) else f"has {key!r} that is not true or false"
    if key == "max_wait":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WAIT
        return None if ok else f"has {key!r} that is not a whole number of seconds from 1 to {MAX_WAIT}"
    if key == "checkpoint_s3_uri":
        return None if isinstance(value, str) and _S3_URI.fullmatch(value) else f"has {key!r} that is not s3://..."
    if key in ("subnets", "security_group_ids"):
        return _texts_problem(key, value, _VPC_ID, 16 if key == "subnets" else 5, "subnet or security group ids")
    return None


def _args_problem(value: Any, job: str) -> str | None:
    if not isinstance(value, Mapping):
        return f"is not a mapping of sagemaker {SDK_CLASS[job]} arguments"
    known = PROCESSOR_ARGS if job == PROCESSING else ESTIMATOR_ARGS
    for key, item in value.items():
        if key in OWNED[job]:
            return f"sets {key!r}, which pipecast cannot pass ({OWNED[job][key]})"
        if key not in known:
            return f"has {key!r}, which is not a sagemaker {SDK_CLASS[job]} argument pipecast passes " \
                   f"({', '.join(known)})"
        problem = _value_problem(key, item)
        if problem:
            return problem
    if job == TRAINING:
        if ("subnets" in value) != ("security_group_ids" in value):
            return "has only one of 'subnets' and 'security_group_ids'; a SageMaker VpcConfig needs both"
        if value.get("use_spot_instances") and "max_wait" not in value:
            return "has 'use_spot_instances' without 'max_wait'; managed spot training needs MaxWaitTimeInSeconds"
        if "max_wait" in value and not value.get("use_spot_instances"):
            return "has 'max_wait' without 'use_spot_instances' true; SageMaker takes it only for spot training"
    return None


def processor_args_problem(value: Any) -> str | None:
    """Why ``value`` cannot be ``processor_args``, or None (the setting's check)."""
    return _args_problem(value, PROCESSING)


def estimator_args_problem(value: Any) -> str | None:
    """Why ``value`` cannot be ``estimator_args``, or None (the setting's check)."""
    return _args_problem(value, TRAINING)


def apply(arguments: dict[str, Any], job: str, args: Mapping[str, Any]) -> str | None:
    """Write ``args`` (checked) into a step's ``Arguments`` where the job request holds them; a problem, or None."""
    if job == PROCESSING:
        network = args.get("network_config") or {}
        if network:
            arguments["NetworkConfig"] = _network(network)
        if "volume_kms_key" in args:
            arguments["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] = args["volume_kms_key"]
    else:
        arguments.update(_network(args))
        if "volume_kms_key" in args:
            arguments["ResourceConfig"]["VolumeKmsKeyId"] = args["volume_kms_key"]
        if "output_kms_key" in args:
            arguments["OutputDataConfig"]["KmsKeyId"] = args["output_kms_key"]
        if "checkpoint_s3_uri" in args:
            arguments["CheckpointConfig"] = {"S3Uri": args["checkpoint_s3_uri"]}
        if args.get("use_spot_instances"):
            runtime = arguments.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME)
            if args["max_wait"] < runtime:
                return (f"estimator_args 'max_wait' {args['max_wait']} is below the step's MaxRuntimeInSeconds "
                        f"{runtime}; SageMaker requires MaxWaitTimeInSeconds to be at least that")
            arguments["EnableManagedSpotTraining"] = True
            arguments["StoppingCondition"] = {"MaxRuntimeInSeconds": runtime, "MaxWaitTimeInSeconds": args["max_wait"]}
    if "tags" in args:
        arguments["Tags"] = as_tags(args["tags"])
    return None


def _network(args: Mapping[str, Any]) -> dict[str, Any]:
    """NetworkConfig's fields (a processing job's; a training job has the same at its top level)."""
    network: dict[str, Any] = {}
    if "encrypt_inter_container_traffic" in args:
        network["EnableInterContainerTrafficEncryption"] = args["encrypt_inter_container_traffic"]
    if "enable_network_isolation" in args:
        network["EnableNetworkIsolation"] = args["enable_network_isolation"]
    if "subnets" in args:
        network["VpcConfig"] = {"SecurityGroupIds": list(args["security_group_ids"]), "Subnets": list(args["subnets"])}
    return network
