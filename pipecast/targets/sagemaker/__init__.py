"""The ``sagemaker`` target: Amazon SageMaker Pipelines (definition JSON, submit and track with boto3).

The package splits the target by concern: :mod:`.target` (the class and the definition), :mod:`.steps`
(one step), :mod:`.instances` (resources to instance types), :mod:`.expressions` (``Get``/``Std:Join``),
:mod:`.schedule` (EventBridge cron) and :mod:`.submit` (boto3, imported only when submitting).
"""

from __future__ import annotations

from pipecast.targets.sagemaker.target import SageMakerTarget

__all__ = ["SageMakerTarget"]
