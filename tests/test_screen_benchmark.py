"""The speed benchmark runs end to end on tiny sizes (a smoke test, not a measurement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_speed.py"


def test_the_speed_benchmark_prints_its_table_the_planted_error_and_the_acceptance_lines():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "| function" in text and "median s (vs torch slow)" in text
    for method in ("lower bound", "gradcheck full", "gradcheck screen", "torch slow", "torch fast"):
        assert method in text
    planted = text.split("Planted:")[1]
    screen_line = next(line for line in planted.splitlines() if "| gradcheck screen" in line)
    assert "| caught" in screen_line and "located [" in screen_line
    assert "Acceptance (issue 5):" in text
