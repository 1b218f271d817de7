"""What the index needs from a model on top of :mod:`hf_dialret.inference`: its identity, dialogues in the forms
users type, the candidates' embeddings per modality, and the probe that ties a saved index to the model's weights.

Encoding itself is :mod:`hf_dialret.inference`'s (length buckets, one tokenizer call per chunk, inference mode,
``precision`` = ``"auto"`` / ``"fp32"`` / ``"bf16"``): these functions only adapt its tensors to the index's numpy
arrays. Only the model surface of ``docs/internals.md`` is used (``encode_responses``, ``encode_context``,
``forward`` for the intent, ``joint_response_pool``), so DR, SDR, MDR and DialCLIP (also wrapped in a
``PeftModel``) all work the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..inference import Precision, encode_contexts, encode_contexts_with_intent, encode_responses
from .candidates import IMAGE_MODALITY, TEXT_MODALITY, Candidate

#: A fixed text response encoded at build time and again when a model is bound to a loaded index: a different
#: vector means the index was built with other weights, which dimension and class checks cannot see.
PROBE_TEXT = "a probe reply used to check that an index and a model belong together"
#: Cosine similarity under which the probe vectors are taken to come from different weights. Loose enough for
#: bf16/fp16 and CPU/GPU differences (about 0.999 and above), tight enough for any retraining.
PROBE_MIN_COSINE = 0.98


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that built it."""

    architecture: str
    model_type: str | None
    dim: int | None
    joint_response_pool: bool
    has_intent_head: bool
    name_or_path: str | None


def base_model(model: Any) -> Any:
    """The retriever itself, unwrapping a ``PeftModel`` (DialCLIP adapters) to read its class and flags."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_identity(model: Any) -> ModelIdentity:
    """Read the identity of an hf_dialret retriever, or fail clearly for anything else."""
    base = base_model(model)
    joint = getattr(base, "joint_response_pool", None)
    if not isinstance(joint, bool) or not hasattr(base, "encode_responses") or not hasattr(base, "encode_context"):
        raise TypeError(
            f"{type(base).__name__} is not an hf_dialret retriever: it needs encode_context, encode_responses and "
            "a boolean joint_response_pool (see docs/internals.md)"
        )
    config = getattr(base, "config", None)
    dim = getattr(config, "projection_dim", None)
    # Models carry has_intent_head as a class attribute (MDR: False); fall back to having predict_intent at all.
    has_intent = bool(getattr(base, "has_intent_head", hasattr(base, "predict_intent"))) and not joint
    return ModelIdentity(
        architecture=type(base).__name__,
        model_type=getattr(config, "model_type", None),
        dim=int(dim) if isinstance(dim, int) else None,
        joint_response_pool=joint,
        has_intent_head=has_intent,
        name_or_path=_absolute_if_local(getattr(config, "_name_or_path", None) or None),
    )


def _absolute_if_local(name_or_path: str | None) -> str | None:
    # A relative model directory would not resolve from another working directory (hf-dialret search reads it).
    if name_or_path and os.path.isdir(name_or_path):
        return os.path.abspath(name_or_path)
    return name_or_path


def _as_numpy(embeds: torch.Tensor) -> np.ndarray:
    return embeds.detach().to(device="cpu", dtype=torch.float32).numpy()


def encode_candidates(
    model: Any, processor: Any, candidates: Sequence[Candidate], batch_size: int = 64, precision: Precision = "auto"
) -> dict[str, np.ndarray]:
    """Embed candidates: ``{"text": (T, D), "image": (I, D)}`` float32, each in the candidates' order.

    One :func:`~hf_dialret.inference.encode_responses` call per modality (texts length-bucketed, images
    ``batch_size`` at a time); image candidates are decoded here, so pass as many as you can hold decoded.
    """
    out: dict[str, np.ndarray] = {}
    groups: dict[str, list[Any]] = {
        TEXT_MODALITY: [c.text for c in candidates if c.modality == TEXT_MODALITY],
        IMAGE_MODALITY: [c.load_image() for c in candidates if c.modality == IMAGE_MODALITY],
    }
    for modality, values in groups.items():
        if not values:
            continue
        embeds = encode_responses(model, processor, values, batch_size=batch_size, precision=precision)
        if embeds.shape[0] != len(values):
            raise RuntimeError(
                f"{type(base_model(model)).__name__}.encode_responses returned {embeds.shape[0]} embeddings for "
                f"{len(values)} {modality} candidates"
            )
        out[modality] = _as_numpy(embeds)
    return out


def normalize_dialogue(dialogue: Any) -> list[Any]:
    """Accept the forms a user naturally types: one string, a list of strings, turn dicts, or chat messages.

    Chat messages (``{"role", "content"}``) become turns with ``speaker=role``; image paths in turns are opened,
    because the processor takes images, not paths.
    """
    if isinstance(dialogue, str):
        dialogue = [dialogue]
    if not isinstance(dialogue, (list, tuple)) or not dialogue:
        shown = f"{type(dialogue).__name__} {str(dialogue)[:60]!r}"
        raise ValueError(f"a dialogue must be a non-empty list of turns, got {shown}")
    turns: list[Any] = []
    for i, turn in enumerate(dialogue):
        if isinstance(turn, str):
            turns.append(turn)
            continue
        if not isinstance(turn, dict):
            raise TypeError(f"turn {i}: expected a str or a dict, got {type(turn).__name__}")
        if "role" in turn and "content" in turn and "text" not in turn:
            turn = {"speaker": turn["role"], "text": turn["content"], "image": None}
        if not isinstance(turn.get("text"), (str, type(None))):
            raise TypeError(f"turn {i}: text must be a str or None, got {type(turn['text']).__name__}")
        image = turn.get("image")
        if isinstance(image, (str, os.PathLike)):
            path = os.fspath(image)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"turn {i}: image file {path!r} does not exist")
            with Image.open(path) as opened:
                turn = {**turn, "image": opened.convert("RGB")}
        turns.append(turn)
    if not any(_has_content(turn) for turn in turns):
        raise ValueError("a dialogue needs at least one turn with text or an image; every turn here is empty")
    return turns


def _has_content(turn: Any) -> bool:
    if isinstance(turn, str):
        return bool(turn.strip())
    return bool((turn.get("text") or "").strip()) or turn.get("image") is not None


def encode_dialogues(
    model: Any,
    processor: Any,
    dialogues: Sequence[Any],
    with_intent: bool,
    batch_size: int = 32,
    precision: Precision = "auto",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embed dialogues (any form :func:`normalize_dialogue` takes): queries (B, 2, D) and, when asked, intent logits
    (B, 2)."""
    turns = [normalize_dialogue(d) for d in dialogues]
    if with_intent:
        queries, intent = encode_contexts_with_intent(model, processor, turns, batch_size, precision)
        return _as_numpy(queries), _as_numpy(intent)
    queries = encode_contexts(model, processor, turns, batch_size, precision)
    if queries.ndim != 3 or queries.shape[1] != 2:
        raise RuntimeError(
            f"encode_context must return (batch, 2, dim) query embeddings, got shape {tuple(queries.shape)}"
        )
    return _as_numpy(queries), None


def probe_embedding(model: Any, processor: Any) -> np.ndarray:
    """The model's fp32 embedding of :data:`PROBE_TEXT` (see there).

    Always fp32, whatever the index's precision: the probe identifies the weights, so it must not depend on the
    hardware an index was built or loaded on.
    """
    return _as_numpy(encode_responses(model, processor, [PROBE_TEXT], batch_size=1, precision="fp32"))[0]
