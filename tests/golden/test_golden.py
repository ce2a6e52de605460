"""Golden tests: every case × every registered target, byte for byte (DESIGN §4).

A target that cannot compile a case has its error message as the golden (``ERROR.txt``), so what is
refused is as reviewed as what is emitted. ``pytest --update-goldens`` rewrites the files.
"""

from __future__ import annotations

import pytest

from pipecast.errors import ValidationError
from pipecast.targets.registry import target_paths
from tests.helpers.cases import (
    ALL_CASE_IDS,
    ALL_CASES,
    case_settings,
    compile_case,
    golden_dir,
    read_tree,
    write_tree,
)

TARGETS = list(target_paths())


def emitted_files(case, target: str) -> dict[str, str]:
    """What the golden of ``case`` × ``target`` holds: the emitted files, or the error that refuses the case."""
    pipeline = case.build()
    if target == "ir":
        return {"pipeline.json": pipeline.to_json()}
    try:
        return compile_case(target, pipeline, golden=True, settings=case_settings(case.name, target)).files
    except ValidationError as err:
        return {"ERROR.txt": str(err) + "\n"}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_CASE_IDS)
def test_golden(case, target, request):
    files = emitted_files(case, target)
    folder = golden_dir(case.name, target)
    if request.config.getoption("--update-goldens"):
        write_tree(folder, files)
    expected = read_tree(folder)
    assert expected, f"no golden for {case.name} × {target}: run pytest --update-goldens and review the files"
    assert sorted(files) == sorted(expected), "the set of emitted files differs from the goldens"
    for path, text in files.items():
        assert text == expected[path], f"{case.name}/{target}/{path} differs from its golden"


@pytest.mark.parametrize("case", ALL_CASES, ids=ALL_CASE_IDS)
def test_emit_is_deterministic_across_processes(case):
    """The same pipeline compiled in a fresh interpreter gives the same bytes."""
    import json
    import subprocess
    import sys

    from tests.helpers.cases import env_with_cases

    script = (
        "import json,sys\n"
        "from tests.golden.test_golden import emitted_files\n"
        "from tests.helpers.cases import case\n"
        "print(json.dumps({t: emitted_files(case(sys.argv[1]), t) for t in sys.argv[2:]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, case.name, *TARGETS], capture_output=True, text=True,
                            env={**env_with_cases(), "PYTHONHASHSEED": "123"}, check=True)
    assert json.loads(result.stdout) == {t: emitted_files(case, t) for t in TARGETS}
