"""Every Tekton file passes IBM's tekton-lint (``@ibm/tekton-lint`` from npm) with no errors.

The linter is installed on first use into ``.cache/npm`` under the repository (git-ignored), with a
bounded timeout, and reused afterwards. Warnings are allowed (tekton-lint prefers kebab-case parameter
names; pipecast keeps the Python names so ``-p lr_small=…`` means the same everywhere).

tekton-lint skips objects without ``metadata.name``, so each PipelineRun (which has ``generateName``)
gets the fixed name ``pipecast submit`` would give it; otherwise the linter would not look at it.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipecast.targets.serialize import dump_yaml_all
from tests.helpers.cases import CASE_IDS, ROOT, compile_case
from tests.helpers.slow import slow_fixture

LINT_VERSION = "1.1.0"
CACHE = ROOT / ".cache" / "npm"


@pytest.fixture(scope="session")
@slow_fixture
def tekton_lint() -> Path:
    executable = CACHE / "node_modules" / ".bin" / "tekton-lint"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".install.lock", "w") as lock:  # several test processes may start at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not executable.exists():
            npm = shutil.which("npm")
            assert npm, "tekton-lint needs Node.js and npm on PATH (https://nodejs.org)"
            subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--loglevel=error",
                            f"@ibm/tekton-lint@{LINT_VERSION}"], check=True, timeout=300, capture_output=True)
    assert executable.exists()
    return executable


def write_named(files: dict[str, str], folder: Path) -> None:
    """Write the files, naming each PipelineRun as a submit would (tekton-lint skips unnamed objects)."""
    for name, text in files.items():
        docs = list(yaml.safe_load_all(text))
        for doc in docs:
            if doc.get("kind") == "PipelineRun":
                meta = doc["metadata"]
                meta["name"] = meta.pop("generateName") + "run-1"
                doc["metadata"] = {"name": meta.pop("name"), **meta}
        (folder / name).write_text(dump_yaml_all(docs))


def lint(executable: Path, folder: Path) -> list[dict]:
    files = sorted(str(p) for p in folder.glob("*.yaml"))
    result = subprocess.run([str(executable), "--format", "json", *files], capture_output=True, text=True,
                            timeout=120, cwd=folder)
    problems = json.loads(result.stdout)
    assert result.returncode in (0, 1), result.stderr
    return problems


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
@pytest.mark.parametrize("case_name", CASE_IDS)
def test_tekton_lint_reports_no_errors(case_name, embed, tekton_lint, tmp_path):
    write_named(compile_case("tekton", case_name, golden=True, settings={"embed": embed}).files, tmp_path)
    problems = lint(tekton_lint, tmp_path)
    assert [p for p in problems if p["level"] == "error"] == []


def test_tekton_lint_can_fail(tekton_lint, tmp_path):
    """The linter does report errors: an undefined pipeline param, a missing runAfter task, an extra param."""
    name = "quickstart-pipeline.yaml"
    text = compile_case("tekton", "quickstart", golden=True).files[name]
    broken = (text.replace("value: $(params.n)", "value: $(params.nn)")
              .replace("- make-numbers", "- make-numberz", 1)
              .replace("  - name: seed\n    type: string\n  - name: step\n", "  - name: step\n", 1))  # the Task's
    write_named({name: broken}, tmp_path)
    rules = {p["rule"] for p in lint(tekton_lint, tmp_path) if p["level"] == "error"}
    assert rules == {"no-undefined-param", "no-pipeline-missing-task", "no-extra-param"}


# tekton-lint 1.1.0 predates matrix fan-out: it wants every task param in `params` (a matrixed task gets `index`
# from `matrix.params`, as docs/matrix.md requires) and reads `$(tasks.X.results.R[*])`, Tekton's whole-array
# result reference, as a result named `R[*]`. Exactly these two findings are set aside; every other one counts.
_MATRIX_BLIND = (re.compile(r"^Pipeline '[a-z0-9-]+' references task '[a-z0-9-]+'( \(as '[a-z0-9-]+'\))?, but "
                            r"parameter 'index' is not supplied"),
                 re.compile(r"refers to an undefined output result \(as '\$\(tasks\.map-\d+-items\.results\."
                            r"index\[\*\]\)' - 'index\[\*\]' is not a result"))


@pytest.mark.parametrize("embed", [False, True], ids=["pipeline", "embedded"])
def test_tekton_lint_reports_no_errors_on_control_flow(embed, tekton_lint, tmp_path):
    """The control-flow goldens too: matrix, when, array results, finally with task statuses."""
    from tests.targets.tekton.test_flow import NAMES, _compiled

    blind = 0
    for name in NAMES:
        files = _compiled(name, {"embed": embed})
        if "ERROR.txt" not in files:
            (tmp_path / name).mkdir()
            write_named(files, tmp_path / name)
            errors = [p for p in lint(tekton_lint, tmp_path / name) if p["level"] == "error"]
            known = [p for p in errors if any(rule.search(p["message"]) for rule in _MATRIX_BLIND)]
            blind += len(known)
            assert [p for p in errors if p not in known] == [], name
    # The linter does read the Pipelines: it finds the matrices (15 of the 78 in tk_nested and tk_nested_maps, 27
    # in tk_nested_item_branch, tk_nested_branches, tk_nested_branch_lists and tk_nested_skip_read, 4 in
    # tk_nested_after, no longer refused).
    assert blind == (0 if embed else 78)
