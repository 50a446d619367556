"""Same seed, same bytes: the evaluation path is chosen by a rule, never by a clock, so three
runs of the CLI over the same cases write byte-identical JSON."""

from __future__ import annotations

import json
import textwrap

import torch

from gradcheck.cli import main

torch.set_num_threads(1)

CASES = """
import torch
from gradcheck import case, normal

lse = case(name="lse", f=lambda x: torch.logsumexp(x, dim=-1).pow(2).sum(),
           inputs={"x": normal(8, 8)}, dtypes=["float64"])
tanh_matmul = case(name="tanh_matmul", f=lambda x: torch.tanh(x @ x).sum(),
                   inputs={"x": normal(36, 36)}, dtypes=["float64"])
"""


def test_three_runs_with_one_seed_pass_and_write_byte_identical_json(tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "batched.py").write_text(textwrap.dedent(CASES))
    reports = []
    for run in range(3):
        output = tmp_path / f"out{run}.json"
        assert main(["run", str(cases), "--seed", "7", "--output", str(output)]) == 0
        reports.append(output.read_bytes())
    capsys.readouterr()
    rows = json.loads(reports[0])["rows"]
    assert {(row["case"], row["outcome"]) for row in rows} == {
        ("lse", "passed"),
        ("tanh_matmul", "passed"),
    }
    assert reports[1] == reports[0] and reports[2] == reports[0]
