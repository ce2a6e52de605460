"""Golden case: every option a step and a pipeline can carry."""

from pipecast import Resources, Retry, Secret, pipeline, step


@step(
    resources=Resources(cpu=2, memory="4Gi"),
    retry=Retry(attempts=3, delay="30s", backoff=2.0, max_delay="10m"),
    timeout="1h",
    env={"LOG_LEVEL": "debug"},
    secrets=[Secret("db-credentials", key="password", env="DB_PASSWORD")],
)
def load(source: str, limit: int) -> dict:
    return {"source": source, "rows": list(range(limit))}


@step(resources=Resources(cpu="500m", memory="1Gi", gpu=1, gpu_type="nvidia-tesla-t4"),
      image="ghcr.io/acme/gpu:2.1", timeout="90m")
def train(data: dict, lr: float, epochs: int, options: dict) -> tuple[dict, float]:
    return {"weights": [lr] * epochs, "options": options}, lr * len(data["rows"])


@step(cache=False)
def publish(model: dict, score: float, dry_run: bool) -> str:
    return f"published {len(model['weights'])} weights, score {score}, dry_run={dry_run}"


@step
def notify(channel: str) -> None:
    print(f"notify {channel}")


@pipeline(
    name="full_options",
    description="Every option: resources, GPU, retries with backoff, timeouts, env, secrets, images, cache.",
    image="ghcr.io/acme/train:1.0",
    schedule="0 3 * * *",
    artifact_root="s3://acme-pipelines/artifacts",
    env={"PROJECT": "acme"},
    secrets=[Secret("api-token", env="API_TOKEN")],
    tags=["golden", "options"],
)
def full_options(source: str = "s3://acme/data.csv", limit: int = 100, lr: float = 0.01, epochs: int = 3,
                 options: dict = {"optimizer": "sgd"}, dry_run: bool = True):  # noqa: B006 - a constant default
    data = load(source, limit)
    model, score = train(data, lr, epochs, options)
    published = publish(model, score, dry_run)
    notify("#ml").after(published)
