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
from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output
from sagemaker.core.workflow.conditions import (
    ConditionEquals,
    ConditionGreaterThan,
    ConditionGreaterThanOrEqualTo,
    ConditionIn,
    ConditionLessThan,
    ConditionLessThanOrEqualTo,
    ConditionNot,
    ConditionOr,
)
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
from sagemaker.train.configs import CheckpointConfig, Compute, Networking, OutputDataConfig, StoppingCondition, Tag
from sagemaker.train.model_trainer import ModelTrainer

CONDITIONS = {"Equals": ConditionEquals, "GreaterThan": ConditionGreaterThan,
              "GreaterThanOrEqualTo": ConditionGreaterThanOrEqualTo, "LessThan": ConditionLessThan,
              "LessThanOrEqualTo": ConditionLessThanOrEqualTo}
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


def to_condition(condition: dict[str, Any], parameters: dict[str, Any], files: dict[str, PropertyFile]) -> Any:
    """pipecast's condition JSON as the SDK's ``Condition`` (``Std:JsonGet`` as ``JsonGet`` on a ``PropertyFile``)."""
    kind = condition["Type"]
    if kind == "Not":
        return ConditionNot(to_condition(condition["Condition"], parameters, files))
    if kind == "Or":
        return ConditionOr([to_condition(c, parameters, files) for c in condition["Conditions"]])
    if kind == "In":
        return ConditionIn(value=to_value(condition["QueryValue"], parameters, files),
                           in_values=[to_value(v, parameters, files) for v in condition["Values"]])
    return CONDITIONS[kind](left=to_value(condition["LeftValue"], parameters, files),
                            right=to_value(condition["RightValue"], parameters, files))


def to_value(value: Any, parameters: dict[str, Any], files: dict[str, PropertyFile]) -> Any:
    if isinstance(value, dict) and "Std:JsonGet" in value:
        spec = value["Std:JsonGet"]
        _, step, _, name = spec["PropertyFile"]["Get"].split(".")
        return JsonGet(step_name=step, property_file=files[f"{step}.{name}"], json_path=spec["Path"])
    if isinstance(value, dict):
        return to_sdk(value, parameters)
    return value


def build(step: dict[str, Any], parameters: dict[str, Any], session: Any, files: dict[str, PropertyFile]) -> Any:
    """The SDK step saying what pipecast's step says (condition steps with their branches, built first)."""
    arguments = step["Arguments"]
    depends = step.get("DependsOn") or None
    if step["Type"] == "Condition":
        branches = {key: [build(s, parameters, session, files) for s in arguments.get(key, [])]
                    for key in ("IfSteps", "ElseSteps")}
        return ConditionStep(name=step["Name"], description=step.get("Description"), depends_on=depends,
                             conditions=[to_condition(c, parameters, files) for c in arguments["Conditions"]],
                             if_steps=branches["IfSteps"], else_steps=branches["ElseSteps"])
    environment = {k: to_sdk(v, parameters) for k, v in (arguments.get("Environment") or {}).items()}
    if step["Type"] == "Processing":
        spec = arguments["AppSpecification"]
        cluster = arguments["ProcessingResources"]["ClusterConfig"]
        processor = Processor(role=arguments["RoleArn"], image_uri=spec["ImageUri"],
                              instance_count=cluster["InstanceCount"], instance_type=cluster["InstanceType"],
                              entrypoint=[to_sdk(w, parameters) for w in spec["ContainerEntrypoint"]],
                              env=environment or None, sagemaker_session=session,
                              **processor_hatch(arguments))
        outputs = [ProcessingOutput(output_name=o["OutputName"], s3_output=ProcessingS3Output(
            s3_uri=to_sdk(o["S3Output"]["S3Uri"], parameters), local_path=o["S3Output"]["LocalPath"],
            s3_upload_mode=o["S3Output"]["S3UploadMode"]))
            for o in arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])]
        step_args = processor.run(arguments=[to_sdk(w, parameters) for w in spec["ContainerArguments"]],
                                  outputs=outputs or None)
        own = [PropertyFile(name=f["PropertyFileName"], output_name=f["OutputName"], path=f["FilePath"])
               for f in step.get("PropertyFiles", [])]
        files.update({f"{step['Name']}.{f.name}": f for f in own})
        return ProcessingStep(name=step["Name"], step_args=step_args, property_files=own or None,
                              description=step.get("Description"), depends_on=depends)
    config = arguments["ResourceConfig"]
    trainer = ModelTrainer(training_image=arguments["AlgorithmSpecification"]["TrainingImage"],
                           role=arguments["RoleArn"], sagemaker_session=session, environment=environment,
                           compute=Compute(instance_type=config["InstanceType"],
                                           instance_count=config["InstanceCount"],
                                           volume_kms_key_id=config.get("VolumeKmsKeyId"),
                                           enable_managed_spot_training=arguments.get(
                                               "EnableManagedSpotTraining")),
                           **estimator_hatch(arguments))
    return TrainingStep(name=step["Name"], step_args=trainer.train())


def main(source: str, out: str) -> None:
    with open(source, encoding="utf-8") as handle:
        definition = json.load(handle)
    session = PipelineSession(default_bucket="pipecast-sdk-comparison")
    parameters = {p["Name"]: PARAMETER_TYPES[p["Type"]](name=p["Name"], default_value=p.get("DefaultValue"))
                  for p in definition["Parameters"]}
    files: dict[str, PropertyFile] = {}
    steps = [build(step, parameters, session, files) for step in definition["Steps"]]
    pipeline = Pipeline(name="comparison", parameters=list(parameters.values()), steps=steps,
                        sagemaker_session=session)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(pipeline.definition())


if __name__ == "__main__":
    for index in range(1, len(sys.argv), 2):  # one interpreter for every file: the SDK takes long to import
        main(sys.argv[index], sys.argv[index + 1])
