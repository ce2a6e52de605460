"""The golden case ``full_options`` without its GPU request, for real runs on a machine without a GPU.

Docker refuses to create a container that reserves a device no driver provides (``could not select device
driver "nvidia"``), so the ``train`` step asks for no GPU here; everything else is the golden case's, which
``test_real_engine`` checks by comparing the two pipelines' IR. The steps stay ``full_options``' functions.
"""

from full_options import load, notify, publish, train

from pipecast import Resources, Secret, pipeline

train_without_gpu = train.with_options(resources=Resources(cpu="500m", memory="1Gi"))


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
    model, score = train_without_gpu(data, lr, epochs, options)
    published = publish(model, score, dry_run)
    notify("#ml").after(published)
