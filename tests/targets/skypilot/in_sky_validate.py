"""Run inside SkyPilot's interpreter: load emitted YAML files with SkyPilot's own loader and schemas.

Usage: ``python in_sky_validate.py CASES.json OUT.json``. CASES.json maps a label to
``{"path": FILE, "env": [[NAME, VALUE], ...]}``; OUT.json gets, per label, either ``{"error": TEXT}``
or what SkyPilot made of the file (the DAG's name, whether it is a chain, and each task's fields).
"""

from __future__ import annotations

import json
import sys

import jsonschema
import yaml
from sky.utils import dag_utils, schemas


def _describe(path: str, env: list[list[str]]) -> dict:
    with open(path, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    task_schema = jsonschema.Draft202012Validator(schemas.get_task_schema())
    resources_schema = jsonschema.Draft7Validator(schemas.get_resources_schema())
    for document in documents:
        if set(document) == {"name"}:
            continue  # the pipeline header, which the loader reads itself
        task_schema.validate(document)
        resources_schema.validate(document.get("resources", {}))
    # The loader `sky launch FILE` and `sky jobs launch FILE --env NAME=VALUE` use.
    dag = dag_utils.load_chain_dag_from_yaml(path, env_overrides=[tuple(e) for e in env])
    tasks = []
    for task in dag.tasks:
        (resources,) = task.resources
        # What a launch checks for labels (Resources.validate; the rest of it needs the clouds' catalogs online).
        label_errors = [resources.cloud.is_label_valid(k, v)[1] for k, v in (resources.labels or {}).items()]
        tasks.append({
            "label_errors": [e for e in label_errors if e],
            "name": task.name,
            "workdir": task.workdir,
            "cloud": str(resources.cloud).lower() if resources.cloud else None,
            "region": resources.region,
            "cpus": resources.cpus,
            "memory": resources.memory,
            "accelerators": resources.accelerators,
            "use_spot": resources.use_spot,
            "image_id": resources.image_id,
            "labels": resources.labels,
            "envs": dict(task.envs),
            "secrets": sorted(ref.name for ref in task.managed_secret_refs),
            "setup": task.setup,
            "run": task.run,
        })
    return {"name": dag.name, "is_chain": dag.is_chain(), "tasks": tasks,
            "edges": [[a.name, b.name] for a, b in dag.graph.edges]}


def main() -> None:
    cases = json.loads(open(sys.argv[1], encoding="utf-8").read())
    results = {}
    for label, case in cases.items():
        try:
            results[label] = _describe(case["path"], case.get("env", []))
        except Exception as err:  # every failure is reported back to the test, with its type
            results[label] = {"error": f"{type(err).__name__}: {err}"}
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
