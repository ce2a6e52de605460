"""How long Airflow's DagBag takes to parse the DAG file pipecast emits, against DAGs a person would write.

Airflow's dag-processor re-parses every DAG file again and again, so the emitted file must parse about as fast
as a hand-written DAG. For a chain of N steps this times ``DagBag(file)`` in a process forked from a warmed-up
parent whose objects ``gc.freeze()`` set aside, as Airflow's dag-processor parses files (median of several
runs; once compiling the file at every parse, once with Python's bytecode cache), for three files with the same
N BashOperator tasks, the same commands and the same N-1 edges. The pipeline has one parameter, so each file
declares it as a DAG ``Param`` (Airflow deep-copies the DAG's params into every task, whoever wrote the file).

* ``emitted``: what ``pipecast compile --target airflow`` writes (a JSON task table in one string literal + a loop);
* ``loop``: a hand-written loop that builds each task's command with an f-string;
* ``flat``: one statement per task and per edge, as a naive generator would write.

Run: ``python benchmarks/airflow_dag_parse.py`` (needs the airflow extra). Prints figures, asserts nothing.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (1_000, 5_000)
REPEATS = 15

LOOP = '''from datetime import datetime, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

with DAG(dag_id="loop_{n}", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False,
         params={{"seed": Param(1, type="integer")}}, default_args={{"retries": 0}}) as dag:
    previous = None
    for k in range({n}):
        name = "source" if k == 0 else ("work" if k == 1 else f"work_{{k}}")
        task = BashOperator(
            task_id=name,
            bash_command=f"exec python -m pipecast.runtime run --fn generated:work --pipeline chain_{n} "
                         f'--step {{name}} --run-id "$PIPECAST_RUN_ID" --artifact-root s3://bench/artifacts '
                         f"--const k={{k}} --output output",
            env={{"PIPECAST_RUN_ID": "{{{{ run_id }}}}"}},
            append_env=True,
            skip_on_exit_code=None,
        )
        if previous is not None:
            previous >> task
        previous = task
'''

FLAT_HEAD = '''from datetime import datetime, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

with DAG(dag_id="flat_{n}", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False,
         params={{"seed": Param(1, type="integer")}}, default_args={{"retries": 0}}) as dag:
'''
FLAT_TASK = ('    t{k} = BashOperator(task_id={name!r}, bash_command={command!r}, '
             'env={{"PIPECAST_RUN_ID": "{{{{ run_id }}}}"}}, append_env=True, skip_on_exit_code=None)\n')


def write_files(folder: Path, n: int) -> dict[str, Path]:
    """The three DAG files of an ``n``-step chain."""
    from benchmarks.generated import chain
    from pipecast.flow import EmitOptions, compile_pipeline

    bundle = compile_pipeline(chain(n).build(), "airflow", EmitOptions(settings={"artifact_root": "s3://bench/artifacts"}))
    files = {"emitted": folder / f"emitted_{n}" / bundle.main_file, "loop": folder / f"loop_{n}" / f"loop_{n}.py",
             "flat": folder / f"flat_{n}" / f"flat_{n}.py"}
    for path in files.values():
        path.parent.mkdir(parents=True)
    files["emitted"].write_text(bundle.files[0][1])
    files["loop"].write_text(LOOP.format(n=n))
    flat = [FLAT_HEAD.format(n=n)]
    for k in range(n):
        name = "source" if k == 0 else ("work" if k == 1 else f"work_{k}")
        command = (f"exec python -m pipecast.runtime run --fn generated:work --pipeline chain_{n} --step {name} "
                   f'--run-id "$PIPECAST_RUN_ID" --artifact-root s3://bench/artifacts --const k={k} --output output')
        flat.append(FLAT_TASK.format(k=k, name=name, command=command))
    flat += [f"    t{k - 1} >> t{k}\n" for k in range(1, n)]
    files["flat"].write_text("".join(flat))
    return files


def _parse_in_child(path: str) -> float:
    """Parse ``path`` once in a forked child, as Airflow's dag-processor parses each file in a fresh process."""
    from airflow.dag_processing.dagbag import DagBag

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: time one parse, report it, leave without cleanup
        os.close(read)
        started = time.perf_counter()
        DagBag(path)
        os.write(write, repr(time.perf_counter() - started).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seconds = float(pipe.read())
    os.waitpid(pid, 0)
    return seconds


def measure(paths: list[str]) -> dict[str, Any]:
    """In a process with its own AIRFLOW_HOME: the median seconds ``DagBag`` takes on each file."""
    from airflow.dag_processing.dagbag import DagBag

    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {path: [] for path in paths}
    for path in paths:
        bag = DagBag(path)  # warm-up: imports, and the first compile (which writes the bytecode cache if allowed)
        assert not bag.import_errors, bag.import_errors
        (dag,) = bag.dags.values()
        results[path + ":tasks"] = len(dag.tasks)
        del bag, dag
    gc.collect()
    gc.freeze()  # what Airflow's dag-processor manager does before it forks a parsing process
    for _ in range(REPEATS):  # round robin, so a busy moment on a shared machine hits every file alike
        for path in paths:
            times[path].append(_parse_in_child(path))
    results.update({path: statistics.median(values) for path, values in times.items()})
    from airflow import __version__

    results["version"] = __version__
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {n: write_files(folder, n) for n in SIZES}
        paths = [str(p) for by_kind in files.values() for p in by_kind.values()]
        env = {**os.environ, "AIRFLOW_HOME": str(folder / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # First with no bytecode cache (every parse compiles the file), then with the cache the first parse writes.
        for caching, extra in (("compiled at every parse", {"PYTHONDONTWRITEBYTECODE": "1"}),
                               ("bytecode cached", {})):
            out = subprocess.run([sys.executable, __file__, "--measure", *paths], env={**env, **extra},
                                 capture_output=True, text=True, check=True)
            results = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"Airflow {results['version']} DagBag parse time, chain of N BashOperator tasks, median of "
                  f"{REPEATS}, {caching}:")
            for n, by_kind in files.items():
                seconds = {kind: results[str(path)] for kind, path in by_kind.items()}
                assert all(results[f"{path}:tasks"] == n for path in by_kind.values())
                print(f"  {n:>5} steps: emitted {seconds['emitted']:.3f} s, hand-written loop {seconds['loop']:.3f} s, "
                      f"flat {seconds['flat']:.3f} s; emitted/loop = {seconds['emitted'] / seconds['loop']:.2f}x, "
                      f"flat/loop = {seconds['flat'] / seconds['loop']:.2f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2:])))
    else:
        main()
