"""Tests of the recall@k evaluate metric: hand-computed values, an independent sorting-based reference, offline load."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest

from hf_dialret.metrics import RECALL_AT_K_PATH, metric_path
from hf_dialret.metrics.recall_at_k.recall_at_k import RecallAtK, ranks_from_scores, recall_at_k


@pytest.fixture(scope="module")
def metric() -> evaluate.EvaluationModule:
    return evaluate.load(RECALL_AT_K_PATH, keep_in_memory=True)


def test_hand_computed_values(metric: evaluate.EvaluationModule) -> None:
    scores = [
        [0.9, 0.1, 0.2, 0.3],  # positive 0 is top -> rank 1
        [0.9, 0.1, 0.2, 0.3],  # positive 2: 0.9 and 0.3 above -> rank 3
        [0.5, 0.5, 0.5, 0.5],  # positive 1 tied with all three negatives -> pessimistic rank 4
        [0.1, 0.4, 0.8, 0.4],  # positives {1, 3} tied with each other at 0.4; only 0.8 above -> rank 2
    ]
    out = metric.compute(predictions=scores, references=[[0], [2], [1], [1, 3]], k_values=[1, 2, 3])
    assert out["recall@1"] == pytest.approx(1 / 4)
    assert out["recall@2"] == pytest.approx(2 / 4)
    assert out["recall@3"] == pytest.approx(3 / 4)
    assert out["sum"] == pytest.approx(1 / 4 + 2 / 4 + 3 / 4)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4 + 1 / 2) / 4)
    assert out["mean_rank"] == pytest.approx((1 + 3 + 4 + 2) / 4)
    assert out["num_queries"] == 4


def test_single_index_references_and_default_ks(metric: evaluate.EvaluationModule) -> None:
    out = metric.compute(predictions=[[3.0, 2.0, 1.0]] * 2, references=[2, 0])
    assert set(out) == {"recall@1", "recall@5", "recall@10", "sum", "mrr", "mean_rank", "num_queries"}
    assert out["recall@1"] == 0.5 and out["recall@5"] == 1.0 and out["mean_rank"] == 2.0


def test_minus_inf_positive_ranks_last() -> None:
    """A positive outside the searched pool (-inf) ranks below every other candidate, even other -inf ones."""
    scores = np.array([[0.2, -np.inf, -np.inf, 0.1]])
    assert ranks_from_scores(scores, np.array([[False, True, False, False]]))[0] == 4


def _sorting_reference(scores: np.ndarray, positives: list[list[int]]) -> np.ndarray:
    """Independent rank: sort by score descending, negatives before positives on ties, first positive's position."""
    ranks = []
    for row, pos in zip(scores, positives):
        is_pos = np.zeros(len(row), dtype=bool)
        is_pos[pos] = True
        order = np.lexsort((is_pos, -row))  # last key is primary: score descending, then negatives (False) first
        ranks.append(int(np.flatnonzero(is_pos[order])[0]) + 1)
    return np.array(ranks)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sorting_reference_on_random_matrices(seed: int, metric: evaluate.EvaluationModule) -> None:
    rng = np.random.default_rng(seed)
    num_queries, num_candidates = 40, 25
    # Rounded scores produce many ties, which is where the tie rule matters.
    scores = np.round(rng.normal(size=(num_queries, num_candidates)), 1)
    positives = [sorted(rng.choice(num_candidates, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(num_queries)]
    ranks = _sorting_reference(scores, positives)
    ks = [1, 3, 10]
    expected = {f"recall@{k}": float((ranks <= k).mean()) for k in ks}
    out = metric.compute(predictions=scores.tolist(), references=positives, k_values=ks)
    direct = recall_at_k(scores, positives, ks)
    for results in (out, direct):
        for key, value in expected.items():
            assert results[key] == pytest.approx(value)
        assert results["mrr"] == pytest.approx(float((1.0 / ranks).mean()))
        assert results["mean_rank"] == pytest.approx(float(ranks.mean()))


def test_ragged_rows_and_batches() -> None:
    metric = RecallAtK(keep_in_memory=True)
    metric.add_batch(predictions=[[0.1, 0.2], [0.3, 0.2, 0.1]], references=[1, 2])
    metric.add(predictions=[1.0], references=0)
    out = metric.compute(k_values=[1])
    assert out["recall@1"] == pytest.approx(2 / 3) and out["mean_rank"] == pytest.approx((1 + 3 + 1) / 3)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([[0.1, 0.2]], [5], "outside"),
        ([[0.1, np.nan]], [0], "NaN"),
        ([[0.1, 0.2]], [[]], "no positive"),
        ([[0.1, 0.2], [0.1, 0.2]], [0], "references"),
    ],
)
def test_bad_inputs_raise(predictions: list, references: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recall_at_k(predictions, references)


def test_unknown_metric_name() -> None:
    with pytest.raises(ValueError, match="no metric"):
        metric_path("bleu")


def test_empty_input_is_a_clear_error(metric: evaluate.EvaluationModule) -> None:
    with pytest.raises(ValueError, match="no queries to evaluate"):
        metric.compute(predictions=[], references=[])


def test_k_values_whole_numbers_or_a_single_int(metric: evaluate.EvaluationModule) -> None:
    single = metric.compute(predictions=[[0.9, 0.1], [0.1, 0.9]], references=[0, 0], k_values=1)
    assert single["recall@1"] == 0.5 and not any(key.startswith("recall@") and key != "recall@1" for key in single)
    for bad in ([1.7], [0], [True]):
        with pytest.raises(ValueError, match="whole numbers >= 1"):
            recall_at_k([[0.9, 0.1]], [0], k_values=bad)
