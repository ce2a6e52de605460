"""Package mode and the runtime's code checks (issue 13).

- submit after a code-only change in package mode: a fresh process loads the changed pipeline, archives its
  import root, compiles (argo) and uploads the package to a ``file://`` artifact root: everything ``pipecast
  submit --code package`` does before the engine is asked (goal: no image build, under 2 s plus the upload);
- the same for an import root of 200 modules (~2 MB), to see how the archive grows;
- the runtime's checks per step (pipecast version, step function source hash), as a local run pays them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBMIT = """
import sys, time
started = time.perf_counter()
from pipecast.build.package import upload_package
from pipecast.build.shipping import prepare_package
from pipecast.compiler.loader import load_pipeline
from pipecast.flow import EmitOptions, compile_pipeline
pipeline = load_pipeline(sys.argv[1]).build()
loaded = time.perf_counter()
prepared = prepare_package(pipeline, sys.argv[2])
archived = time.perf_counter()
compile_pipeline(pipeline, "argo", EmitOptions(settings={"image": "registry.example/any:1", "artifact_root": "s3://b/a"},
                                               code_sha256=prepared.package.sha256))
compiled = time.perf_counter()
upload_package(prepared.package, sys.argv[2])
done = time.perf_counter()
print(done - started, archived - loaded, compiled - archived, done - compiled, len(prepared.package.data),
      len(prepared.package.files))
"""


def submit_after_change(project: Path, module: str, repeats: int = 5) -> list[tuple[float, ...]]:
    """Edit the module (a code-only change), then time the package-mode submit work in a fresh process."""
    rows = []
    with tempfile.TemporaryDirectory() as store:
        for number in range(repeats):
            with open(project / f"{module}.py", "a") as handle:
                handle.write(f"\n# change {number}\n")
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", SUBMIT, str(project / f"{module}.py"), f"file://{store}"],
                                 capture_output=True, text=True, check=True, cwd=project,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
            rows.append((time.perf_counter() - started, *map(float, out)))
    return rows


def report(title: str, rows: list[tuple[float, ...]]) -> None:
    def med(index: int) -> float:
        return statistics.median(row[index] for row in rows)

    print(title)
    print(f"  whole process (interpreter start included): {med(0) * 1000:7.0f} ms")
    print(f"  of which archive + sha256: {med(2) * 1000:.0f} ms, compile: {med(3) * 1000:.0f} ms, "
          f"upload (file://): {med(4) * 1000:.0f} ms; package {med(5) / 1024:.0f} KiB, {med(6):.0f} files")


def archive_warm(project: Path, repeats: int = 5) -> float:
    """Archive + sha256 of the import root with the imports already done (the work itself)."""
    from pipecast.build.package import build_package

    build_package(str(project))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        build_package(str(project))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def checks_per_step(repeats: int = 20000) -> float:
    from examples.quickstart import quickstart
    from pipecast.runtime.verify import check_source, check_version

    step = quickstart.build().steps[0]
    from pipecast.runtime.executor import load_function

    fn = load_function(step.function.path)
    check_source(step.name, step.function.path, fn, step.function.source_hash)
    started = time.perf_counter()
    for _ in range(repeats):
        check_version(step.name, "0.1.0")
        check_source(step.name, step.function.path, fn, step.function.source_hash)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        project = Path(work, "examples")
        shutil.copytree(ROOT / "examples", project)
        report("submit after a code-only change, package mode, examples/ as the import root (median of 5)",
               submit_after_change(project, "ml_training"))
        print(f"  archive + sha256 with imports warm: {archive_warm(project) * 1000:.1f} ms")
        for number in range(200):
            (project / f"module_{number:03}.py").write_text("VALUE = '" + "x" * 10_000 + "'\n")
        report("the same with 200 more modules of 10 KB in the import root (median of 5)",
               submit_after_change(project, "ml_training"))
        print(f"  archive + sha256 with imports warm: {archive_warm(project) * 1000:.1f} ms")
    print(f"machine load average while measured: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)")
    print(f"runtime checks (pipecast version, source hash) per step: {checks_per_step() * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
