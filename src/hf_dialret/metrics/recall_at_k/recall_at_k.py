"""Recall@k, Sum, MRR and mean rank for response retrieval, as an ``evaluate`` metric.

Self-contained on purpose: ``evaluate.load`` copies this file alone into its module cache and imports it from there,
so it may import only installed packages (numpy, datasets, evaluate), never ``hf_dialret``.

Ranking rule
------------
A query's rank is the best rank among its positives, and a positive tied with a negative ranks *below* it
(pessimistic ties). Concretely, ``rank = 1 + #{negatives whose score >= the best positive score}``. Pessimistic ties
make degenerate models (constant scores) score at the bottom of the pool, not at the top, and make "this candidate is
out of the searched pool" expressible as a score of ``-inf``: such a positive ranks last whatever else is ``-inf``.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Retrieval metrics from a score matrix: for each query, a list of candidate scores (higher is better) and the index
(or indices) of its correct candidates. Returns recall@k for every k (fraction of queries whose best positive is in
the top k), `sum` (the sum of those recalls, the "R@1+R@5+R@10" figure of retrieval papers, on a 0-1 scale per term),
`mrr` (mean reciprocal rank) and `mean_rank` (1 = best). Ties are counted pessimistically: a positive tied with a
negative ranks below it. A query with several positives takes the best rank among them.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[list[float]]`): one row of candidate scores per query; rows may have different lengths.
    references (`list[int]` or `list[list[int]]`): index of the correct candidate in the query's row, or a list of
        indices when a query has several correct candidates (e.g. duplicate responses in the pool).
    k_values (`Sequence[int]`, default `(1, 5, 10)`): cut-offs for recall@k.
Returns:
    `dict` with `recall@{k}` for each k, `sum`, `mrr`, `mean_rank` and `num_queries`.
Examples:
    >>> metric = evaluate.load(hf_dialret.metrics.RECALL_AT_K_PATH)
    >>> metric.compute(predictions=[[0.1, 0.9, 0.3], [0.5, 0.5, 0.2]], references=[1, 0], k_values=[1, 2])
    {'recall@1': 0.5, 'recall@2': 1.0, 'sum': 1.5, 'mrr': 0.75, 'mean_rank': 1.5, 'num_queries': 2}
"""

DEFAULT_K_VALUES: tuple[int, ...] = (1, 5, 10)


def _as_index_list(reference: int | Sequence[int], row_length: int, query: int) -> list[int]:
    indices = [int(reference)] if np.ndim(reference) == 0 else [int(i) for i in reference]
    if not indices:
        raise ValueError(f"query {query} has no positive candidate")
    for index in indices:
        if not 0 <= index < row_length:
            raise ValueError(f"query {query}: positive index {index} is outside its {row_length} candidates")
    return indices


def positive_mask(references: Sequence[int | Sequence[int]], num_candidates: int) -> np.ndarray:
    """Boolean `(num_queries, num_candidates)` mask of the positives named by ``references``."""
    mask = np.zeros((len(references), num_candidates), dtype=bool)
    for query, reference in enumerate(references):
        mask[query, _as_index_list(reference, num_candidates, query)] = True
    return mask


def ranks_from_scores(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Rank (1-based, pessimistic ties) of each query's best positive.

    Args:
        scores: `(Q, N)` float scores, higher is better; ``-inf`` marks a candidate outside the searched pool.
        positives: `(Q, N)` boolean mask with at least one True per row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.ndim != 2 or scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} must be equal 2-d shapes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not positives.any(axis=1).all():
        raise ValueError(f"query {int(np.argmin(positives.any(axis=1)))} has no positive candidate")
    best_positive = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)
    # `>=` is the pessimistic tie rule; only negatives count, so a query's other positives never push it down.
    return 1 + ((scores >= best_positive) & ~positives).sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray, k_values: Sequence[int] = DEFAULT_K_VALUES) -> dict[str, float | int]:
    """Recall@k for each k, their sum, MRR and mean rank from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    k_values = [k_values] if isinstance(k_values, (int, np.integer)) else list(k_values)
    if any(isinstance(k, bool) or not float(k).is_integer() or k < 1 for k in k_values):
        raise ValueError(f"k values must be whole numbers >= 1, got {k_values}")
    results: dict[str, float | int] = {f"recall@{int(k)}": float((ranks <= int(k)).mean()) for k in k_values}
    results["sum"] = float(sum(results.values()))
    results["mrr"] = float((1.0 / ranks).mean())
    results["mean_rank"] = float(ranks.mean())
    results["num_queries"] = int(ranks.size)
    return results


def recall_at_k(
    predictions: Sequence[Sequence[float]] | np.ndarray,
    references: Sequence[int | Sequence[int]] | np.ndarray,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
) -> dict[str, float | int]:
    """Plain-function form of the metric (no arrow round trip), for callers that already hold a score matrix.

    ``predictions`` is a `(Q, N)` array or a list of rows of possibly different lengths; ``references`` as in the
    metric, or a `(Q, N)` boolean positive mask when ``predictions`` is an array.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} score rows but {len(references)} references")
    if isinstance(predictions, np.ndarray) and predictions.ndim == 2:
        if isinstance(references, np.ndarray) and references.dtype == bool:
            return metrics_from_ranks(ranks_from_scores(predictions, references), k_values)
        return metrics_from_ranks(ranks_from_scores(predictions, positive_mask(references, predictions.shape[1])), k_values)
    ranks = np.empty(len(predictions), dtype=np.int64)
    for query, (row, reference) in enumerate(zip(predictions, references)):
        row = np.asarray(row, dtype=np.float64)[None]
        mask = np.zeros_like(row, dtype=bool)
        mask[0, _as_index_list(reference, row.shape[1], query)] = True
        ranks[query] = ranks_from_scores(row, mask)[0]
    return metrics_from_ranks(ranks, k_values)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RecallAtK(evaluate.Metric):
    """Recall@k / Sum / MRR / mean rank over candidate score rows (see the module docstring for the tie rule)."""

    def _info(self) -> evaluate.MetricInfo:
        scores = datasets.Sequence(datasets.Value("float64"))  # float64: float32 casting could invent ties
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            # Single positive index first: evaluate picks the first feature set the first example fits.
            features=[
                datasets.Features({"predictions": scores, "references": datasets.Value("int64")}),
                datasets.Features({"predictions": scores, "references": datasets.Sequence(datasets.Value("int64"))}),
            ],
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """``evaluate.Metric.compute``; empty predictions and references are refused with a clear message."""
        # evaluate picks a feature set from the first example, so an empty input would fail inside evaluate with an
        # IndexError before _compute could say what is wrong. (The docstring is needed: evaluate appends to it.)
        if predictions is not None and references is not None and len(predictions) == 0 and len(references) == 0:
            raise ValueError("no queries to evaluate: predictions and references are empty")
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(
        self,
        predictions: list[list[float]],
        references: list[int] | list[list[int]],
        k_values: Sequence[int] = DEFAULT_K_VALUES,
    ) -> dict[str, float | int]:
        return recall_at_k(predictions, references, k_values)
