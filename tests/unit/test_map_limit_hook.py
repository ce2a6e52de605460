"""The map-size limit is a hook each target declares (``Target.map_limit``, pipecast/targets/base.py), not a choice
made by the target's name in pipecast/targets/map_limits.py; the limits themselves: tests/unit/test_map_limits.py."""

from __future__ import annotations

import pytest

from pipecast.errors import ParameterError
from pipecast.targets.base import Target
from pipecast.targets.local import LocalTarget
from pipecast.targets.map_limits import MapLimit, check_values, map_limit
from pipecast.targets.registry import BUILTIN, get_target
from tests.unit import map_limit_pipelines

DECLARED = {"github", "tekton", "airflow", "azureml", "kubeflow", "vertex", "argo"}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_each_target_declares_its_own_limit_or_none(name):
    target = get_target(name)
    declares = type(target).map_limit is not Target.map_limit
    assert declares == (name in DECLARED), name
    if not declares:
        assert map_limit(name, None) is None


class _TwoItems(LocalTarget):
    """A target whose engine expands a map into at most two items (its own declaration, whatever its name)."""

    def map_limit(self, settings):
        return MapLimit(2, "this engine expands at most 2 items", "it cannot be raised")


def test_the_submit_check_asks_the_target_itself():
    pipeline = map_limit_pipelines.short_default.build()
    with pytest.raises(ParameterError) as err:
        check_values(pipeline, _TwoItems(), {}, {"items": [1, 2, 3]})
    assert "map 'map_1' would expand into 3 items from the value of parameter 'items' (3 items); this engine " \
           "expands at most 2 items" in str(err.value)
    check_values(pipeline, _TwoItems(), {}, {"items": [1, 2]})
    check_values(pipeline, LocalTarget(), {}, {"items": list(range(10_000))})  # local declares none
