"""Run inside the sagemaker SDK's interpreter: rebuild pipecast's steps with the SDK and print its definition.

Usage: ``python in_sdk_v3.py DEFINITION.json OUT.json [DEFINITION.json OUT.json ...]``, with
``AWS_ENDPOINT_URL`` at a moto server and ``SAGEMAKER_VALIDATE_ROLE=false`` (the SDK checks the default
bucket through S3). Each step of
pipecast's definition becomes the SDK construct that says the same thing, with every ``Get`` and
``Std:Join`` turned back into the SDK's pipeline variables:

- a Processing step: ``Processor(entrypoint=...).run(arguments=...)`` with pipecast's entrypoint and
  arguments, and its environment;
- a Training step: ``ModelTrainer(environment=...)``, the only place the SDK takes pipeline variables in
  a training job (it has no way to put them in the container's arguments).

The escape hatch's fields (VPC, KMS keys, tags, spot training) go to the SDK's own arguments for them
(``network_config``, ``volume_kms_key``, ``tags``; ``Networking``, ``Compute``, ``OutputDataConfig``...), so
the test can check pipecast writes each where the SDK does.

Each OUT.json gets the SDK's pipeline definition; the test compares where each function sits.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sagemaker.core.network import NetworkConfig
from sagemaker.core.processing import Processor
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join
from sagemaker.core.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
from sagemaker.train.configs import CheckpointConfig, Compute, Networking, OutputDataConfig, StoppingCondition, Tag
from sagemaker.train.model_trainer import ModelTrainer

PARAMETER_TYPES = {"String": ParameterString, "Integer": ParameterInteger, "Float": ParameterFloat,
                   "Boolean": ParameterBoolean}


def to_sdk(value: Any, parameters: dict[str, Any]) -> Any:
    """pipecast's JSON function as the SDK's pipeline variable (text stays text)."""
    if isinstance(value, str):
        return value
    if "Get" in value:
        path = value["Get"]
        if path == "Execution.PipelineExecutionId":
            return ExecutionVariables.PIPELINE_EXECUTION_ID
        return parameters[path.removeprefix("Parameters.")]
    join = value["Std:Join"]
    return Join(on=join["On"], values=[to_sdk(v, parameters) for v in join["Values"]])


def processor_hatch(arguments: dict[str, Any]) -> dict[str, Any]:
    """The Processor arguments of pipecast's escape-hatch fields in a processing step."""
    hatch: dict[str, Any] = {}
    network = arguments.get("NetworkConfig")
    if network:
        vpc = network.get("VpcConfig", {})
        hatch["network_config"] = NetworkConfig(
            enable_network_isolation=network.get("EnableNetworkIsolation"),
            encrypt_inter_container_traffic=network.get("EnableInterContainerTrafficEncryption"),
            subnets=vpc.get("Subnets"), security_group_ids=vpc.get("SecurityGroupIds"))
    kms = arguments["ProcessingResources"]["ClusterConfig"].get("VolumeKmsKeyId")
    if kms:
        hatch["volume_kms_key"] = kms
    if "Tags" in arguments:
        hatch["tags"] = arguments["Tags"]
    return hatch


def estimator_hatch(arguments: dict[str, Any]) -> dict[str, Any]:
    """The ModelTrainer arguments of pipecast's escape-hatch fields in a training step."""
    hatch: dict[str, Any] = {}
    if "VpcConfig" in arguments or "EnableInterContainerTrafficEncryption" in arguments:
        vpc = arguments.get("VpcConfig", {})
        hatch["networking"] = Networking(
            subnets=vpc.get("Subnets"), security_group_ids=vpc.get("SecurityGroupIds"),
            enable_network_isolation=arguments.get("EnableNetworkIsolation"),
            enable_inter_container_traffic_encryption=arguments.get("EnableInterContainerTrafficEncryption"))
    output = arguments["OutputDataConfig"]
    if "KmsKeyId" in output:
        hatch["output_data_config"] = OutputDataConfig(s3_output_path=output["S3OutputPath"],
                                                       kms_key_id=output["KmsKeyId"])
    stopping = arguments.get("StoppingCondition", {})
    if "MaxWaitTimeInSeconds" in stopping:
        hatch["stopping_condition"] = StoppingCondition(max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
                                                        max_wait_time_in_seconds=stopping["MaxWaitTimeInSeconds"])
    if "CheckpointConfig" in arguments:
        hatch["checkpoint_config"] = CheckpointConfig(s3_uri=arguments["CheckpointConfig"]["S3Uri"])
    if "Tags" in arguments:
        hatch["tags"] = [Tag(key=tag["Key"], value=tag["Value"]) for tag in arguments["Tags"]]
    return hatch


def main(source: str, out: str) -> None:
    with open(source, encoding="utf-8") as handle:
        definition = json.load(handle)
    session = PipelineSession(default_bucket="pipecast-sdk-comparison")
    parameters = {p["Name"]: PARAMETER_TYPES[p["Type"]](name=p["Name"], default_value=p.get("DefaultValue"))
                  for p in definition["Parameters"]}
    steps = []
    for step in definition["Steps"]:
        arguments = step["Arguments"]
        environment = {k: to_sdk(v, parameters) for k, v in (arguments.get("Environment") or {}).items()}
        if step["Type"] == "Processing":
            spec = arguments["AppSpecification"]
            cluster = arguments["ProcessingResources"]["ClusterConfig"]
            processor = Processor(role=arguments["RoleArn"], image_uri=spec["ImageUri"],
                                  instance_count=cluster["InstanceCount"], instance_type=cluster["InstanceType"],
                                  entrypoint=[to_sdk(w, parameters) for w in spec["ContainerEntrypoint"]],
                                  env=environment or None, sagemaker_session=session,
                                  **processor_hatch(arguments))
            step_args = processor.run(arguments=[to_sdk(w, parameters) for w in spec["ContainerArguments"]])
            steps.append(ProcessingStep(name=step["Name"], step_args=step_args))
        else:
            config = arguments["ResourceConfig"]
            trainer = ModelTrainer(training_image=arguments["AlgorithmSpecification"]["TrainingImage"],
                                   role=arguments["RoleArn"], sagemaker_session=session, environment=environment,
                                   compute=Compute(instance_type=config["InstanceType"],
                                                   instance_count=config["InstanceCount"],
                                                   volume_kms_key_id=config.get("VolumeKmsKeyId"),
                                                   enable_managed_spot_training=arguments.get(
                                                       "EnableManagedSpotTraining")),
                                   **estimator_hatch(arguments))
            steps.append(TrainingStep(name=step["Name"], step_args=trainer.train()))
    pipeline = Pipeline(name="comparison", parameters=list(parameters.values()), steps=steps,
                        sagemaker_session=session)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(pipeline.definition())


if __name__ == "__main__":
    for index in range(1, len(sys.argv), 2):  # one interpreter for every file: the SDK takes long to import
        main(sys.argv[index], sys.argv[index + 1])
