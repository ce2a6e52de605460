"""Pipelines the Airflow target's tests compile besides the golden cases."""

from __future__ import annotations

from pipecast import Resources, Retry, Secret, pipeline, step


@step
def emit(items: list, keys: dict, flag: bool) -> dict:
    return {"items": items, "keys": keys, "flag": flag}


DEDICATED = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
SPOT = {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}


@step(image="ghcr.io/acme/pod:1", resources=Resources(cpu="250m", memory="256Mi"),
      settings={"airflow": {"namespace": "gpu-jobs", "tolerations": [DEDICATED]}},
      secrets=[Secret("db-credentials", key="password", env="DB_PASSWORD")])
def in_pod(data: dict) -> dict:
    return data


@step(settings={"airflow": {"mode": "local"}}, retry=Retry(attempts=4, delay="5s", backoff=3.0, max_delay="1m"))
def on_worker(data: dict, text: str) -> str:
    return f"{text}:{sorted(data)}"


@pipeline(name="mixed_modes", artifact_root="s3://acme/artifacts",
          settings={"airflow": {"namespace": "jobs", "service_account": "pipecast-runner", "tolerations": [SPOT]}},
          secrets=[Secret("api-token", env="API_TOKEN")])
def mixed_modes(items: list = [1, 2], keys: dict = {"a": "$(HOME)"}, flag: bool = False,  # noqa: B006
                text: str = "$$ {{ x }}"):
    """Steps in pods and on the worker in one DAG; its parameter names are methods of a dict too."""
    data = emit(items, keys, flag)
    on_worker(in_pod(data), text)


@step
def fail_always(n: int) -> int:
    raise RuntimeError(f"step failed on purpose (n={n})")


@step
def before_failure() -> int:
    return 1


@pipeline(name="failing")
def failing(n: int = 1):
    """A step that fails, for the failed-run tests."""
    fail_always(n).after(before_failure())


@step
def keyed(values: list, items: int, dump: str) -> int:
    return len(values) + items + len(dump)


@pipeline(name="reserved_names")
def reserved_names(values: list = [], items: int = 2, dump: str = "x"):  # noqa: B006
    """Parameters named like methods of Airflow's params dict."""
    keyed(values, items, dump)


@pipeline(name="required_scheduled", schedule="@daily")
def required_scheduled(n: int):
    keyed([1], n, "x")


@step
def sleep_long(seconds: int) -> int:
    import time

    time.sleep(seconds)
    return seconds


@pipeline(name="slow")
def slow(seconds: int = 300):
    """A step that runs long enough to be cancelled."""
    sleep_long(seconds)


@step(env={"PIPECAST_COMMAND": "mine"}, secrets=[Secret("token", env="PIPECAST_RUN_ID")])
def claims_reserved_names(n: int) -> int:
    return n


@pipeline(name="reserved_env")
def reserved_env(n: int = 1):
    """Environment names that would be overwritten by the ones pipecast's tasks rely on."""
    claims_reserved_names(n)


SECRET_ENVS = ("CI_TOKEN", "DB_PASSWORD", "DB_REGION")


@step(secrets=[Secret("team/ci token", env="CI_TOKEN"), Secret("db:main", key="password", env="DB_PASSWORD"),
               Secret("db:main", key="region (eu)", env="DB_REGION")])
def read_airflow_secrets() -> dict:
    import os

    return {name: os.environ[name] for name in SECRET_ENVS}


@pipeline(name="airflow_secrets")
def airflow_secrets():
    """Airflow variables and connections whose names hold characters a template must escape."""
    read_airflow_secrets()


@step(secrets=[Secret("ci-token", env="CI_TOKEN"), Secret("db-main", key="password", env="DB_PASSWORD"),
               Secret("db-main", key="region", env="DB_REGION")])
def read_kubernetes_secrets() -> dict:
    import os

    return {name: os.environ[name] for name in SECRET_ENVS}


@pipeline(name="kubernetes_secrets")
def kubernetes_secrets():
    """Kubernetes secrets, by name and key (the first one's key is its env name)."""
    read_kubernetes_secrets()


# The operator_kwargs escape hatch: the pipeline's arguments (every task without its own), a pod step's own
# (KubernetesPodOperator's), a worker step's own (BashOperator's). The owner is hostile: it must reach Airflow
# verbatim and never change the DAG file.
HOSTILE_OWNER = "ml'\"\n{{ 7*7 }} {% raw %} $(whoami) ${HOME} `id` \\ #x"
PIPELINE_KWARGS = {"owner": HOSTILE_OWNER, "pool": "ml", "queue": "gpu", "priority_weight": 10,
                   "weight_rule": "absolute", "email": ["ml@example.com"], "email_on_failure": False}
POD_KWARGS = {"pool": "pods", "pool_slots": 2, "startup_timeout_seconds": 600, "on_finish_action": "keep_pod",
              "priority_class_name": "batch-high", "termination_grace_period": 30, "name": "tuned-pod",
              "random_name_suffix": False, "get_logs": True}
WORKER_KWARGS = {"pool": "cpu", "max_active_tis_per_dag": 1, "output_encoding": "latin-1"}


@step
def tuned_default(n: int) -> int:
    return n


@step(image="ghcr.io/acme/pod:1", settings={"airflow": {"operator_kwargs": POD_KWARGS}})
def tuned_pod(n: int) -> int:
    return n + 1


@step(settings={"airflow": {"operator_kwargs": WORKER_KWARGS}})
def tuned_worker(n: int) -> int:
    return n + 2


@pipeline(name="operator_kwargs", artifact_root="s3://acme/artifacts",
          settings={"airflow": {"operator_kwargs": PIPELINE_KWARGS, "ship_code": False}})
def operator_kwargs(n: int = 1):
    """Operator arguments for the pipeline's tasks, and a pod's and a worker's own."""
    tuned_worker(tuned_pod(tuned_default(n)))


@step(settings={"airflow": {"operator_kwargs": {"retry_delay": 5}}})
def refused_kwargs() -> int:
    return 1


@pipeline(name="bad_kwargs")
def bad_kwargs():
    """A step whose operator_kwargs set an argument pipecast writes (refused at its line)."""
    refused_kwargs()
