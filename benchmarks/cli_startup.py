"""`pipecast --help` wall time (issue: ≤ 150 ms) and the engine SDKs it imports (must be none)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main() -> None:
    times = []
    for _ in range(10):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipecast.cli", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; from pipecast.cli import main\n"
         "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow','kfp','boto3','kubernetes','sky',"
         "'paramiko','azure','rich','jinja2','fsspec'}))"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    print(f"pipecast --help: median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
          f"over 10 runs; heavy modules imported: {imported}")


if __name__ == "__main__":
    main()
