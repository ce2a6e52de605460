"""Airflow: the runtime prints the step's artifact URI as its last line, which BashOperator pushes as the XCom.

The real Airflow run that reads the XCom back is in tests/targets/airflow/test_dags_test.py.
"""

from __future__ import annotations

from pipecast.runtime.__main__ import main


def _prints_without_newline() -> int:
    print("the step's own output, unterminated", end="")
    return 1


def _argv(root, step: str = "s") -> list[str]:
    return ["run", "--fn", f"{__name__}:_prints_without_newline", "--pipeline", "p", "--step", step,
            "--run-id", "manual__2021-01-01T00:00:00+00:00", "--artifact-root", str(root), "--output", "n"]


def test_the_step_uri_is_the_last_line_on_its_own(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "p")
    assert main(_argv(tmp_path)) == 0
    out, err = capfd.readouterr()
    assert out.splitlines()[-2:] == ["the step's own output, unterminated",
                                     f"file://{tmp_path}/p/runs/manual__2021-01-01T00_00_00+00_00/s"]
    assert "succeeded" in err


def test_outside_airflow_nothing_is_printed(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    assert main(_argv(tmp_path)) == 0
    assert capfd.readouterr().out == "the step's own output, unterminated"
