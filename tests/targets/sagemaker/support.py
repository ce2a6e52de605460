"""Reading what the sagemaker target emits back, in tests (its golden settings, its definition)."""

from __future__ import annotations

import json
from typing import Any

from pipecast.targets.base import Bundle
from tests.helpers.cases import golden_settings

SETTINGS = golden_settings("sagemaker")


def definition(bundle: Bundle) -> dict[str, Any]:
    """The parsed pipeline definition of a bundle."""
    return json.loads(bundle[bundle.main_file])
