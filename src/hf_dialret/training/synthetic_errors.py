"""Where a retriever's top-ranked response goes wrong on the synthetic corpus.

Each synthetic dialogue describes two painted things and ends with a request that refers to one of them, the
*target* (:mod:`hf_dialret.data.synthetic`). Regenerating the test dialogues with their ground truth
(:func:`~hf_dialret.data.synthetic_ground_truth`) tells, for every query:

* how the request refers to the target: by the ``thing`` ("the mug"), by an ``attribute`` only the target has ("the
  red one") or by a ``negated attribute`` of the other thing ("the one that is not blue");
* what the top-ranked candidate is when it is wrong: the *distractor's* own response (the reply the same question
  gets about the other thing, or the other thing's picture: a reference resolved to the wrong thing), another reply
  naming the target's or the distractor's thing, another picture and how many of its attributes are off.

docs/training.md ("Where the errors are") reads the main job through this.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..data.synthetic import (
    ATTRIBUTES, DEFAULT_IMAGE_FRACTION, SyntheticDialogue, synthetic_ground_truth, tokenize_words)
from ..data.synthetic_render import Picture, canonical_png

REFERENCE_KINDS = ("thing", "attribute", "negated attribute")
CORRECT = "correct"


def reference_kind(dialogue: SyntheticDialogue) -> str:
    """How the final request refers to the target: one of :data:`REFERENCE_KINDS`."""
    if dialogue.reference.attribute == "thing":
        return "thing"
    return "negated attribute" if dialogue.reference.negated else "attribute"


def is_picture_id(response_id: str) -> bool:
    """Whether a pool id is a picture's attribute key (``synthetic/red-star-2-sand``) rather than a reply text."""
    return response_id.startswith("synthetic/")


def response_id(dialogue: SyntheticDialogue) -> str:
    """The id of a dialogue's true response in the test pool: the reply text, or the picture's attribute key."""
    return dialogue.target.picture.key if dialogue.intent == "image" else dialogue.reply


def classify_top1(dialogue: SyntheticDialogue, predicted_id: str) -> str:
    """What the top-ranked candidate (``predicted_id``: a reply text or a picture key) is for ``dialogue``."""
    is_picture = is_picture_id(predicted_id)
    if predicted_id == response_id(dialogue):
        return CORRECT
    if dialogue.intent == "image":
        if not is_picture:
            return "a text reply"
        if predicted_id == dialogue.distractor.picture.key:
            return "the distractor's picture"
        picture, target = Picture.from_key(predicted_id), dialogue.target.picture
        off = sum(getattr(picture, a) != getattr(target, a) for a in ATTRIBUTES)
        return f"another picture, {off} attribute{'s' if off > 1 else ''} off"
    if is_picture:
        return "a picture"
    if predicted_id == dialogue.distractor_reply:
        return "the distractor's reply"
    words = set(tokenize_words(predicted_id))
    if dialogue.distractor.thing in words:
        return "another reply naming the distractor's thing"
    if dialogue.target.thing in words:
        return "another reply naming the target's thing"
    return "another reply naming neither thing"


def summarize_top1(dialogues: Sequence[SyntheticDialogue], pool_ids: Sequence[str], top1: Sequence[int]) -> dict:
    """R@1 by response modality and reference kind, and the top-1 categories of :func:`classify_top1`.

    Args:
        dialogues: the queries' ground truth.
        pool_ids: the candidate pool's ids (reply texts and picture keys).
        top1: for every dialogue, the pool row of its top-ranked candidate.
    """
    if len(top1) != len(dialogues):
        raise ValueError(f"{len(top1)} top-1 rows for {len(dialogues)} dialogues")
    queries: dict[str, Counter] = {"text": Counter(), "image": Counter()}
    hits: dict[str, Counter] = {"text": Counter(), "image": Counter()}
    categories: dict[str, Counter] = {"text": Counter(), "image": Counter()}
    for dialogue, row in zip(dialogues, top1):
        category = classify_top1(dialogue, pool_ids[int(row)])
        kind = reference_kind(dialogue)
        queries[dialogue.intent][kind] += 1
        hits[dialogue.intent][kind] += category == CORRECT
        categories[dialogue.intent][category] += 1
    report: dict[str, Any] = {"recall_at_1": {}, "top1": {}, "queries": {}}
    for modality in ("text", "image"):
        total = sum(queries[modality].values())
        if not total:
            continue
        by_kind = {kind: hits[modality][kind] / n for kind, n in queries[modality].items()}
        report["recall_at_1"][modality] = {
            "all": sum(hits[modality].values()) / total, **{k: by_kind[k] for k in REFERENCE_KINDS if k in by_kind},
        }
        report["top1"][modality] = dict(categories[modality].most_common())
        report["queries"][modality] = dict(queries[modality])
    return report


def synthetic_test_pool(
    dialogues: Sequence[SyntheticDialogue], image_size: int = 48
) -> tuple[list[str], list[str | Image.Image]]:
    """``(ids, responses)``: the deduplicated true responses of ``dialogues`` (canonical pictures, as the test split
    stores them), in first-seen order."""
    ids: dict[str, str | Image.Image] = {}
    for dialogue in dialogues:
        key = response_id(dialogue)
        if key not in ids:
            ids[key] = (Image.open(io.BytesIO(canonical_png(dialogue.target.picture, image_size))).convert("RGB")
                        if dialogue.intent == "image" else dialogue.reply)
    return list(ids), list(ids.values())


def synthetic_error_analysis(
    model: Any,
    processor: Any,
    seed: int = 42,
    num_dialogues: int = 2000,
    split: str = "test",
    image_fraction: float = DEFAULT_IMAGE_FRACTION,
    image_size: int = 48,
    batch_size: int = 64,
) -> dict:
    """Rank the deduplicated responses of the first ``num_dialogues`` of ``split`` (the corpus of ``seed``, as
    ``hf-dialret train --seed`` generated it) and summarise the top-1 with :func:`summarize_top1`.

    Every candidate is scored with the query of its own modality, in one pool of texts and pictures: the deployed
    protocol of MDR and DialCLIP. DR / SDR deploy a predicted modality instead; here their two queries rank the joint
    pool, so a miss of theirs may also be a picture for a text request (and the reverse).
    """
    from ..inference import encode_contexts, encode_responses
    from ..modeling.retrieval_loss import modality_aware_scores

    dialogues = [synthetic_ground_truth(split, index, seed, image_fraction) for index in range(num_dialogues)]
    pool_ids, responses = synthetic_test_pool(dialogues, image_size)
    turns = [[{"speaker": speaker, "text": text, "image": None} for speaker, text in d.turns] for d in dialogues]
    queries = encode_contexts(model, processor, turns, batch_size=batch_size, precision="fp32")
    candidates = encode_responses(model, processor, responses, batch_size=batch_size, precision="fp32")
    if queries.dim() != 3:
        raise ValueError(f"expected one query per response modality, (N, 2, D), got {tuple(queries.shape)}")
    modality = torch.tensor([is_picture_id(key) for key in pool_ids], dtype=torch.long,
                            device=candidates.device)
    top1 = modality_aware_scores(queries, candidates, modality).argmax(dim=1).tolist()
    report = summarize_top1(dialogues, pool_ids, top1)
    report["pool"] = {"texts": int((modality == 0).sum()), "images": int((modality == 1).sum())}
    return report
