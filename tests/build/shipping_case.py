"""A pipeline that uses every shipping option: requirements, a step's own packages, build settings, an S3 root."""

from pipecast import pipeline, step


@step
def load(n: int) -> list:
    return list(range(n))


@step(packages=["scikit-learn==1.5.2"])
def fit(rows: list) -> float:
    return float(sum(rows))


@step(packages=["scikit-learn==1.5.2"])
def score(model: float) -> float:
    return model / 2


@step(image="ghcr.io/acme/reporter:1.0")
def report(value: float) -> str:
    return str(value)


@pipeline(requirements=["numpy==2.1.3", "pandas>=2.2"], artifact_root="s3://bucket/runs",
          settings={"build": {"apt_packages": ["libgomp1"], "wheelhouse": True}})
def shipping(n: int = 5):
    return report(score(fit(load(n))))
