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
    assert "Acceptance (issues 5 and 13):" in text


MEMORY = SCRIPT.with_name("bench_screen_memory.py")


def test_the_memory_benchmark_screens_right_and_wrong_and_runs_the_peer():
    out = subprocess.run(
        [sys.executable, str(MEMORY), "--sizes", "20000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = [line for line in lines[2:] if line.startswith("|")]  # after header and rule
    assert len(rows) == 3
    verdicts = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in rows}
    assert verdicts == {
        "torch fast_mode": "pass",
        "screen, correct": "pass",
        "screen, planted": "fail",
    }
