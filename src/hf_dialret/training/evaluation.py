"""Evaluation protocols on precomputed embeddings (pure functions: no model, no data loading).

Every protocol of DESIGN §4 is computed from one score matrix ``scores`` `(Q, N)`: query `q` against candidate `n`,
where a candidate of modality `m` is scored with the query built for `m` (``context_embeds[:, m]``, docs/internals.md).
Rows are either one shared pool (synthetic: the whole deduplicated test pool; PhotoChat: all test photos and texts)
repeated for every query, or per-query pools (MMDialog: the true response + 999 texts + 999 images).

Protocols (keys of :func:`retrieval_report`):

- ``text_retrieval`` / ``image_retrieval``: oracle intent; queries whose true response is a text (image) ranked
  against the text (image) candidates only.
- ``multimodal_oracle_intent``: every query in the pool of its true modality; ``overall``, ``text``, ``image``.
- ``multimodal``: the deployable setting. Joint-pool models (MDR, DialCLIP) rank texts and images together; intent
  models (DR, SDR) search the pool of their *predicted* modality, so a wrong intent is a miss (the positive is scored
  ``-inf`` and ranks last in the whole pool). Broken down by the modality of the true response.
- ``intent``: accuracy and per-class / macro F1 of the predicted modality: the intent head for DR/SDR, the modality
  of the top-ranked candidate for joint-pool models (their implicit intent).

The numbers come from the ``recall_at_k`` metric's own functions (pessimistic ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..metrics.recall_at_k.recall_at_k import metrics_from_ranks, ranks_from_scores
from ..modeling.modeling_outputs import RESPONSE_MODALITIES
from ..modeling.retrieval_loss import modality_aware_scores

#: Candidate modality of padding entries in per-query pools (see :func:`stack_per_query_pools`).
PADDING = -1


def shared_pool_scores(
    context_embeds: torch.Tensor,
    response_modality: torch.Tensor,
    response_ids: torch.Tensor,
    candidate_embeds: torch.Tensor,
    candidate_modality: torch.Tensor,
    candidate_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, positive mask and candidate modality `(Q, N)` of every query against one shared pool.

    A candidate is a positive when it has the query's response id *and* modality, so duplicates of the true response
    anywhere in the pool count as correct.
    """
    scores = modality_aware_scores(context_embeds.float(), candidate_embeds.float(), candidate_modality)
    positives = (response_ids[:, None] == candidate_ids[None, :]) & (response_modality[:, None] == candidate_modality[None, :])
    missing = ~positives.any(dim=1)
    if bool(missing.any()):
        raise ValueError(f"{int(missing.sum())} queries have no positive in the candidate pool (first: query {int(missing.nonzero()[0])})")
    return scores, positives, candidate_modality.expand_as(scores)


def stack_per_query_pools(
    rows: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-query ``(scores, positives, candidate_modality)`` rows of possibly different lengths.

    Short rows are padded with entries that can never change a rank: score ``-inf``, marked as *positives* (a positive
    is never counted above another, and a ``-inf`` one never raises the best positive score) and modality
    :data:`PADDING` (so no protocol treats them as text or image). A query whose real positive is masked to ``-inf``
    (wrong intent) then ranks right after its real candidates, exactly as in an unpadded row. ``width`` (default:
    the longest row) fixes the padded length, e.g. to gather rows of equal shape from several processes.
    """
    width = max(len(row[0]) for row in rows) if width is None else width
    scores = torch.full((len(rows), width), float("-inf"))
    positives = torch.ones((len(rows), width), dtype=torch.bool)
    modality = torch.full((len(rows), width), PADDING, dtype=torch.long)
    for query, (row_scores, row_positives, row_modality) in enumerate(rows):
        if not bool(row_positives.any()):
            raise ValueError(f"query {query} has no positive among its candidates")
        length = len(row_scores)
        if length > width:
            raise ValueError(f"query {query} has {length} candidates, more than the pool width {width}")
        scores[query, :length] = row_scores.float()
        positives[query, :length] = row_positives
        modality[query, :length] = row_modality
    return scores, positives, modality


def intent_metrics(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Accuracy, per-modality precision/recall/F1 and macro F1 of predicted response modalities."""
    predicted, target = predicted.long().cpu(), target.long().cpu()
    results = {"accuracy": float((predicted == target).float().mean())}
    f1s = []
    for label, name in enumerate(RESPONSE_MODALITIES):
        true_positive = float(((predicted == label) & (target == label)).sum())
        precision = true_positive / max(float((predicted == label).sum()), 1.0)
        recall = true_positive / max(float((target == label).sum()), 1.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        results.update({f"precision_{name}": precision, f"recall_{name}": recall, f"f1_{name}": f1})
        f1s.append(f1)
    results["macro_f1"] = float(np.mean(f1s))
    return results


def _by_modality(ranks: np.ndarray, response_modality: np.ndarray, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Metrics over all queries and per true response modality (a modality without queries is left out)."""
    groups = {"overall": np.ones_like(response_modality, dtype=bool)}
    groups.update({name: response_modality == label for label, name in enumerate(RESPONSE_MODALITIES)})
    return {name: metrics_from_ranks(ranks[mask], ks) for name, mask in groups.items() if mask.any()}


def retrieval_report(
    scores: torch.Tensor,
    positives: torch.Tensor,
    candidate_modality: torch.Tensor,
    response_modality: torch.Tensor,
    intent_logits: torch.Tensor | None = None,
    joint_response_pool: bool = True,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Every protocol from a `(Q, N)` score matrix (see the module docstring for the keys).

    Args:
        scores: modality-aware cosine scores (the logit scale does not change ranks, so it is left out).
        positives: `(Q, N)` bool, True for the true response and its duplicates (and padding).
        candidate_modality: `(Q, N)` long, 0 text / 1 image / :data:`PADDING`.
        response_modality: `(Q,)` long, modality of each query's true response (the intent label).
        intent_logits: `(Q, 2)` intent logits; required when ``joint_response_pool`` is False (DR, SDR).
        joint_response_pool: True for MDR / DialCLIP, False for the two-step DR / SDR.
    """
    if not joint_response_pool and intent_logits is None:
        raise ValueError("two-step models (joint_response_pool=False) need intent_logits for the multimodal protocol")
    scores = scores.detach().float().cpu()
    positives = positives.cpu()
    candidate_modality = candidate_modality.cpu()
    query_modality = response_modality.long().cpu()
    modality_np = query_modality.numpy()
    minus_inf = float("-inf")

    def ranks(mask_out: torch.Tensor) -> np.ndarray:
        return ranks_from_scores(scores.masked_fill(mask_out, minus_inf).numpy(), positives.numpy())

    padding = candidate_modality == PADDING
    oracle = ranks(candidate_modality != query_modality[:, None])
    oracle_groups = _by_modality(oracle, modality_np, ks)
    report: dict[str, Any] = {}
    for label, name in enumerate(RESPONSE_MODALITIES):
        if name in oracle_groups:
            report[f"{name}_retrieval"] = oracle_groups[name]
    report["multimodal_oracle_intent"] = oracle_groups

    if joint_response_pool:
        multimodal = ranks(padding)
        top1 = scores.masked_fill(padding, minus_inf).argmax(dim=1)
        predicted = candidate_modality.gather(1, top1[:, None]).squeeze(1)
        intent_source = "modality of the top-ranked candidate"
    else:
        predicted = intent_logits.detach().float().cpu().argmax(dim=-1)
        multimodal = ranks(candidate_modality != predicted[:, None])
        intent_source = "intent head"
    report["multimodal"] = _by_modality(multimodal, modality_np, ks)
    report["multimodal"]["protocol"] = "joint pool" if joint_response_pool else "predicted intent (wrong intent = miss)"
    report["intent"] = {**intent_metrics(predicted, query_modality), "source": intent_source}
    return report


def flatten_report(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Numeric leaves of a report as flat ``<prefix>_<protocol>_<group>_<metric>`` keys (for ``Trainer.log``)."""
    flat: dict[str, float] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{path}_{key}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{path}_{key}"] = float(value)

    walk(report, prefix)
    return flat
