"""Passing a large file between two local steps: peak memory above baseline and throughput against ``cp``.

The pipeline below writes a file of ``size_mib`` MiB in its first step (``-> OutputPath``) and reads it back in
chunks in the second (``InputPath``). The runtime uploads the file into the artifact store and downloads it for
the second step, each streamed with a sha256, so the file is copied twice. This script runs ``pipecast run`` in a
child process once with a 1 MiB file (the baseline) and once with the large one, and reports the child's peak RSS
(``ru_maxrss``) for each and the difference; and the large run's wall time against the same steps' own work plus
two plain file copies (``cp``) of the file on the same disk, each timing ending with ``sync`` (without it the
page cache's writeback state, not the copying, decides the figures).

Run: ``python benchmarks/path_transfer.py [size_mib]`` (default 1024). Prints figures, asserts nothing.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipecast import InputPath, OutputPath, pipeline, step

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 20


@step(cache=False)
def write_file(size_mib: int) -> OutputPath:
    """Writes ``size_mib`` MiB (one random MiB repeated) to a temporary file."""
    block = os.urandom(CHUNK)
    target = Path(tempfile.mkdtemp(prefix="bench-")) / "data.bin"
    with open(target, "wb") as handle:
        for _ in range(size_mib):
            handle.write(block)
    return OutputPath(target)


@step(cache=False)
def read_file(data: InputPath) -> int:
    """Reads the file it was given in chunks and returns its size."""
    total = 0
    with open(data, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            total += len(chunk)
    return total


@pipeline(name="path-transfer")
def transfer(size_mib: int = 1):
    return read_file(write_file(size_mib))


def _run(size_mib: int, home: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``pipecast run`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipecast.cli", "run", __file__, "-q", "-p", f"size_mib={size_mib}",
                    "--artifact-root", f"{home}/artifacts"], check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "PIPECAST_HOME": home, "PYTHONPATH": str(ROOT)})
    os.sync()  # both timings include writing the data to disk: page-cache writeback otherwise decides them
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: run the small one first so the big one's shows.
    return elapsed, max(peak, before) / 1024


def _plain_copies(size_mib: int, folder: str) -> float:
    """Seconds to write the file as the first step does, then copy it twice with ``cp``."""
    started = time.perf_counter()
    block = os.urandom(CHUNK)
    with open(f"{folder}/a.bin", "wb") as handle:
        for _ in range(size_mib):
            handle.write(block)
    subprocess.run(["cp", f"{folder}/a.bin", f"{folder}/b.bin"], check=True)
    subprocess.run(["cp", f"{folder}/b.bin", f"{folder}/c.bin"], check=True)
    with open(f"{folder}/c.bin", "rb") as handle:
        while handle.read(CHUNK):
            pass
    os.sync()
    return time.perf_counter() - started


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory(prefix="pipecast-bench-") as home:
        os.sync()
        small_seconds, small_rss = _run(1, home)
        plain = _plain_copies(size, home)
        for name in ("a", "b", "c"):
            os.remove(f"{home}/{name}.bin")
        big_seconds, big_rss = _run(size, home)
        shutil.rmtree(f"{home}/artifacts", ignore_errors=True)
    print(f"file size: {size} MiB")
    print(f"peak RSS: baseline (1 MiB file) {small_rss:.0f} MiB, {size} MiB file {big_rss:.0f} MiB, "
          f"above baseline {big_rss - small_rss:.0f} MiB (goal < 100)")
    print(f"wall time: pipecast run {big_seconds:.1f} s (1 MiB run: {small_seconds:.1f} s); the same writes and "
          f"reads with two plain cp copies {plain:.1f} s; throughput ratio "
          f"{plain / max(big_seconds - small_seconds, 1e-9):.2f} of plain")


if __name__ == "__main__":
    main()
