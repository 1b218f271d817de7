"""In-batch-negative InfoNCE for multimodal response retrieval, shared by every hf_dialret retriever.

A flat, dependency-free file (torch only) so that it ships with the models as remote code, and so that the
training package can call the very same function on candidates gathered from every process.

Inputs
------
=====================  ======================================  =============================================
argument               shape                                   meaning
=====================  ======================================  =============================================
context_embeds         (B, 2, D)                               query per response modality (0 text, 1 image)
response_modality      (B,) long                               modality of each example's true response
response_ids           (B,) long, optional                     content id of each true response
candidate_embeds       (N, D)                                  candidate pool (the batch's responses, or the
                                                               responses gathered from all processes)
candidate_modality     (N,) long                               modality of each candidate
candidate_ids          (N,) long, optional                     content id of each candidate
positive_index         (B,) long                               row of each example's true response in the pool
candidate_contexts     (N, 2, D), optional                     symmetric loss only: the context whose true
                                                               response is candidate j (default: context_embeds,
                                                               for an in-batch pool)
=====================  ======================================  =============================================

Candidates that carry the same content id as an example's true response (duplicates, e.g. two dialogues answered
with the same photo) are masked out of that example's negatives instead of being counted as wrong.

With ``symmetric=True`` each example's true response must also pick its own context among the pool's contexts (CLIP's
symmetric InfoNCE), with the same masks; the retrieval loss is the mean of the two directions. The reverse direction
costs one more (B, N) score matrix and no encoder work, and gives every response a training signal against many
contexts at once (measured on the synthetic corpus: +0.02 R@1 at equal steps).

The loss always runs in fp32, also under bf16 autocast: bf16 keeps 8 bits of a cosine, and a logit scale of 30-100
turns that rounding into logit noise of 0.1-0.4, as large as the margins the loss is learning. The score matrices
are ``(B, N)``, so this costs nothing next to the encoders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def modality_aware_scores(
    context_embeds: torch.Tensor, candidate_embeds: torch.Tensor, candidate_modality: torch.Tensor
) -> torch.Tensor:
    """Cosine scores `(B, N)` where each candidate is scored with the query built for its own modality."""
    if context_embeds.dim() != 3 or context_embeds.size(1) != 2:
        raise ValueError(
            f"context_embeds must have shape (batch, 2, dim) (one query per response modality), got {tuple(context_embeds.shape)}"
        )
    text_scores = context_embeds[:, 0] @ candidate_embeds.T
    image_scores = context_embeds[:, 1] @ candidate_embeds.T
    return torch.where(candidate_modality.unsqueeze(0).bool(), image_scores, text_scores)


def _mean_ce(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    if not bool(rows.any()):
        # An empty selection sums to 0 and keeps the graph connected (DDP) when a modality is absent; summing the
        # masked logits themselves would overflow (finfo.min) and give -inf * 0 = nan.
        return logits[rows].sum() * 0.0
    return F.cross_entropy(logits[rows], target[rows])


def _retrieval_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    positive_index: torch.Tensor,
    response_modality: torch.Tensor,
    joint_pool: bool,
    text_loss_weight: float,
    image_loss_weight: float,
) -> torch.Tensor:
    masked = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    if joint_pool:
        return F.cross_entropy(masked, positive_index)
    is_image = response_modality.bool()
    loss = text_loss_weight * _mean_ce(masked, positive_index, ~is_image)
    return loss + image_loss_weight * _mean_ce(masked, positive_index, is_image)


def dialogue_retrieval_loss(
    context_embeds: torch.Tensor,
    response_modality: torch.Tensor,
    candidate_embeds: torch.Tensor,
    candidate_modality: torch.Tensor,
    logit_scale: torch.Tensor,
    positive_index: torch.Tensor | None = None,
    response_ids: torch.Tensor | None = None,
    candidate_ids: torch.Tensor | None = None,
    joint_pool: bool = True,
    intent_logits: torch.Tensor | None = None,
    text_loss_weight: float = 1.0,
    image_loss_weight: float = 1.0,
    intent_loss_weight: float = 1.0,
    symmetric: bool = False,
    candidate_contexts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(loss, scaled_logits)``.

    ``joint_pool=True`` (MDR, DialCLIP): every context competes against all text *and* image candidates; one
    InfoNCE over the joint pool. ``joint_pool=False`` (DR, SDR): a text-retrieval InfoNCE over text candidates for
    text-response examples plus an image-retrieval InfoNCE over image candidates for image-response examples,
    weighted, plus ``intent_loss_weight`` × cross-entropy of ``intent_logits`` against ``response_modality``.
    ``logit_scale`` is the log of the temperature inverse (CLIP style) and is exponentiated here.
    ``symmetric=True`` averages that retrieval loss with the response → context direction over
    ``candidate_contexts`` (see the module docstring).
    """
    with torch.autocast(context_embeds.device.type, enabled=False):  # fp32 scores (see the module docstring)
        context_embeds, candidate_embeds = context_embeds.float(), candidate_embeds.float()
        if candidate_contexts is not None:
            candidate_contexts = candidate_contexts.float()
        if intent_logits is not None:
            intent_logits = intent_logits.float()
        batch = context_embeds.size(0)
        if positive_index is None:
            positive_index = torch.arange(batch, device=context_embeds.device)
        scale = logit_scale.float().exp()
        logits = modality_aware_scores(context_embeds, candidate_embeds, candidate_modality) * scale

        rows = torch.arange(batch, device=logits.device)
        mask = torch.zeros_like(logits, dtype=torch.bool)
        if response_ids is not None and candidate_ids is not None:
            mask |= response_ids.unsqueeze(1) == candidate_ids.unsqueeze(0)
        if not joint_pool:
            mask |= response_modality.unsqueeze(1) != candidate_modality.unsqueeze(0)
        mask[rows, positive_index] = False

        weights = (joint_pool, text_loss_weight, image_loss_weight)
        loss = _retrieval_loss(logits, mask, positive_index, response_modality, *weights)
        if symmetric:
            if candidate_contexts is None:
                if candidate_embeds.size(0) != batch:
                    raise ValueError(
                        f"symmetric=True with a pool of {candidate_embeds.size(0)} candidates for {batch} contexts "
                        "needs candidate_contexts: the context whose true response is each candidate (e.g. gathered "
                        "from every process alongside the candidates)."
                    )
                candidate_contexts = context_embeds
            if candidate_contexts.shape[:2] != (candidate_embeds.size(0), 2):
                raise ValueError(
                    f"candidate_contexts must have shape ({candidate_embeds.size(0)}, 2, dim), one context per "
                    f"candidate, got {tuple(candidate_contexts.shape)}"
                )
            # Row i: example i's true response against every pool context, each scored with the context's query for
            # the response's modality. Candidate j's context is candidate_contexts[j], so the masks carry over as they
            # are: a context whose true response duplicates response i is not a negative either.
            responses = candidate_embeds[positive_index]
            text_scores = responses @ candidate_contexts[:, 0].T
            image_scores = responses @ candidate_contexts[:, 1].T
            reverse = torch.where(response_modality.unsqueeze(1).bool(), image_scores, text_scores) * scale
            loss = (loss + _retrieval_loss(reverse, mask, positive_index, response_modality, *weights)) / 2
        if intent_logits is not None:
            loss = loss + intent_loss_weight * F.cross_entropy(intent_logits, response_modality)
        return loss, logits
