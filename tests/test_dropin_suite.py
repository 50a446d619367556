"""The library-style suite (tests/dropin_suite), run unchanged with torch's checker and with
gradcheck.torch swapped in, each in its own interpreter: every correct test passes under both,
and the planted defect (a descriptor that detaches its input normalisation) fails under ours
with a message that leads to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).parent / "dropin_suite"
DEFECT = "test_vision.py::test_descriptor[detached_normalisation]"


def run_suite(checker: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    record = tmp_path / f"{checker}.json"
    env = {**os.environ, "DROPIN_CHECKER": checker, "DROPIN_RECORD": str(record)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(SUITE),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    tests = json.loads(record.read_text())["tests"]
    return {name.split("dropin_suite/")[-1]: entry for name, entry in tests.items()}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("dropin")
    return {checker: run_suite(checker, tmp) for checker in ("torch", "gradcheck")}


def test_the_suite_has_a_dozen_tests_and_runs_the_same_tests_both_ways(verdicts):
    assert len(verdicts["torch"]) >= 12
    assert set(verdicts["torch"]) == set(verdicts["gradcheck"])


def test_every_test_passes_under_torch(verdicts):
    failed = {k: v for k, v in verdicts["torch"].items() if v["outcome"] != "passed"}
    assert failed == {}


def test_every_correct_test_passes_under_gradcheck(verdicts):
    failed = {
        k: str(v.get("message", ""))[-1500:]
        for k, v in verdicts["gradcheck"].items()
        if v["outcome"] != "passed" and k != DEFECT
    }
    assert failed == {}


def test_the_planted_defect_fails_under_gradcheck_and_the_message_leads_to_it(verdicts):
    entry = verdicts["gradcheck"][DEFECT]
    assert entry["outcome"] == "failed"
    message = str(entry["message"])
    assert "GradcheckError" in message
    assert "detached mean or std" in message
