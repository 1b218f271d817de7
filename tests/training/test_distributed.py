"""Two gloo processes (torchrun, CPU) against one process on the same global batch: same loss and gradients."""

from __future__ import annotations

import json
import os

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_worker.py")


@pytest.fixture(scope="module")
def reports(tmp_path_factory, torchrun) -> dict:
    """One torchrun launch (two processes start slowly) checking a joint-pool and a two-step architecture, and the
    symmetric loss (whose reverse direction needs the contexts gathered too)."""
    output = tmp_path_factory.mktemp("ddp") / "report.json"
    completed = torchrun(WORKER, str(output), "mdr", "dr", "mdr-symmetric")
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(output.read_text())


@pytest.mark.parametrize("architecture", ["mdr", "dr", "mdr-symmetric"])
def test_two_processes_match_one_process(reports: dict, architecture: str) -> None:
    report = reports[architecture]
    # Loss: mean of the two ranks' losses (what DDP optimises) == the single-process loss on the global batch.
    assert report["loss"] == pytest.approx(report["reference_loss"], abs=1e-5)
    # Gradients (float64): DDP-averaged gradients == single-process gradients, for every parameter.
    assert report["missing_grads"] == []
    assert report["max_grad_diff"] < 1e-5
    # Without the cross-process gather each rank sees only half of the negatives: a different (easier) loss.
    assert abs(report["local_only_loss"] - report["reference_loss"]) > 1e-3
    # The Trainer's own DDP path trains and evaluates; both ranks report the same metrics over all 9 queries.
    assert report["steps"] == 2
    rank0, rank1 = ({k: v for k, v in metrics.items() if not k.endswith("_runtime")} for metrics in report["metrics"])
    assert rank0 == rank1
    assert rank0["eval_multimodal_overall_num_queries"] == 9
