"""A scheduled pipeline with no image: for Tekton, its CronJob pod runs pipecast in the image submit builds."""

from pipecast import pipeline, step


@step
def extract(n: int) -> list:
    return list(range(n))


@step(packages=["scikit-learn==1.5.2"])
def fit(rows: list) -> float:
    return float(sum(rows))


@pipeline(requirements=["numpy==2.1.3"], artifact_root="s3://bucket/runs", schedule="0 4 * * *",
          settings={"build": {"wheelhouse": True}})
def scheduled(n: int = 5):
    return fit(extract(n))
