"""Run a `bench/` script in a fresh process (its own peak RSS) and read its JSON report."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench_script(script: str, *arguments: str) -> dict | None:
    """The JSON object on the last line `bench/<script>` prints, or None if it prints nothing;
    the test fails with the script's stderr when it exits with an error."""
    out = subprocess.run(
        [sys.executable, os.path.join("bench", script), *arguments],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None
