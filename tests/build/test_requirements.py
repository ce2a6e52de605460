"""requirements= and packages=: in the IR (round trip, absent when unused), checked where they are written."""

from __future__ import annotations

import pytest

from pipecast import pipeline, step
from pipecast.compiler import ir
from pipecast.errors import ValidationError
from tests.helpers.cases import case


@step(packages=["scikit-learn==1.5.2"])
def fit(n: int) -> int:
    return n


@step
def report(n: int) -> int:
    return n


@pipeline(requirements=["numpy==2.1.3", "pandas>=2; python_version >= '3.10'"])
def shipped(n: int = 1):
    return report(fit(n))


def test_ir_round_trip_with_requirements_and_packages():
    built = shipped.build()
    assert built.requirements == ("numpy==2.1.3", "pandas>=2; python_version >= '3.10'")
    assert built.step("fit").packages == ("scikit-learn==1.5.2",)
    assert built.step("report").packages == ()
    text = built.to_json()
    assert ir.Pipeline.from_json(text) == built
    assert '"packages"' in text and text.count('"packages"') == 1  # the step without packages has no field


def test_ir_of_a_pipeline_without_them_has_no_such_fields():
    text = case("quickstart").build().to_json()
    assert '"requirements"' not in text and '"packages"' not in text


def test_with_options_keeps_and_replaces_packages():
    assert fit.with_options(name="fit2").options.packages == ("scikit-learn==1.5.2",)
    assert fit.with_options(packages=["torch==2.5.1"]).options.packages == ("torch==2.5.1",)


def test_requirements_file_is_read_relative_to_the_pipeline_file(tmp_path):
    from pipecast.compiler.loader import import_file

    (tmp_path / "reqs.txt").write_text("# pinned\nnumpy==2.1.3  # for arrays\n\nrich>=13\n")
    (tmp_path / "flow_with_file.py").write_text(
        "from pipecast import pipeline, step\n\n@step\ndef one() -> int:\n    return 1\n\n"
        "@pipeline(requirements='reqs.txt')\ndef flow_with_file():\n    one()\n")
    built = import_file(str(tmp_path / "flow_with_file.py")).flow_with_file.build()
    assert built.requirements == ("numpy==2.1.3", "rich>=13")


def test_bad_requirements_are_reported_where_written(tmp_path):
    from pipecast.compiler.loader import import_file

    (tmp_path / "bad_reqs.txt").write_text("numpy==2.1.3\n-e ./mylib\nnot a requirement!\n")
    (tmp_path / "flow_bad_reqs.py").write_text(
        "from pipecast import pipeline, step\n\n@step(packages=['torch=2'])\ndef one() -> int:\n    return 1\n\n"
        "@pipeline(requirements='bad_reqs.txt')\ndef flow_bad_reqs():\n    one()\n\n"
        "@pipeline(requirements='missing.txt')\ndef flow_missing():\n    one()\n\n"
        "@pipeline(requirements='numpy')\ndef flow_str():\n    one()\n\n"
        "@pipeline(requirements=['ok==1', 'nope nope'])\ndef flow_list():\n    one()\n")
    module = import_file(str(tmp_path / "flow_bad_reqs.py"))
    with pytest.raises(ValidationError) as err:
        module.flow_bad_reqs.build()
    rendered = [p.render() for p in err.value.problems]
    assert any(r.startswith("error: bad_reqs.txt:2: '-e ./mylib' is a pip option") for r in rendered), rendered
    assert any(r.startswith("error: bad_reqs.txt:3: 'not a requirement!' is not a requirement specifier")
               for r in rendered), rendered
    assert any(r.startswith("error: flow_bad_reqs.py:9: step 'one': packages: 'torch=2' is not a requirement")
               and "fix: write requirements as pip does" in r for r in rendered), rendered
    with pytest.raises(ValidationError, match=r"flow_bad_reqs.py:11: requirements file 'missing.txt' cannot be "):
        module.flow_missing.build()
    with pytest.raises(ValidationError, match=r"requirements file 'numpy' cannot be read"):
        module.flow_str.build()
    with pytest.raises(ValidationError, match=r"flow_bad_reqs.py:19: requirements: 'nope nope' is not a "):
        module.flow_list.build()


def test_packages_must_be_a_list():
    with pytest.raises(ValidationError, match="packages must be a list of requirement specifiers"):
        @step(packages="torch")
        def bad() -> int:
            return 1

        @pipeline
        def uses_bad():
            bad()

        uses_bad.build()
