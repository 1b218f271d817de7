"""``DialogueRetrievalCollator``: unified examples -> a model batch (see ``docs/internals.md``).

The processor does the real work (flattening, truncation from the oldest turn, dynamic padding, image processing);
the collator adds ``response_ids`` (a stable 63-bit hash of ``response.id``, so duplicates can be masked across
processes) and ``labels`` (the response modality = the intent label), and fails early with a clear message when an
example needs an image that was not loaded.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .errors import MissingImageError
from .images import missing_image_message
from .schema import RESPONSE_MODALITIES, response_id_hash, text_response_id


def to_pil(image: Any) -> Image.Image | None:
    """Accept what a dataset row may hold for an image: a PIL image, ``None``, or an undecoded ``{"bytes", "path"}``."""
    if image is None or isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return Image.open(io.BytesIO(image["bytes"]))
        if image.get("path") is not None:
            return Image.open(image["path"])
        return None
    raise TypeError(f"unsupported image value of type {type(image).__name__}")


class DialogueRetrievalCollator:
    """Collate unified examples into the processor's batch plus ``response_ids`` and ``labels``.

    Args:
        processor: A ``DialogueRetrievalProcessor`` (anything with its ``__call__(dialogues=, responses=)``).
        max_context_length: Overrides the processor's context token budget.
        max_response_length: Overrides the processor's response token budget.

    Example::

        collator = DialogueRetrievalCollator(processor)
        batch = collator([dataset[0], dataset[1]])  # input_ids, ..., response_modality, response_ids, labels
    """

    def __init__(self, processor: Any, max_context_length: int | None = None,
                 max_response_length: int | None = None):
        self.processor = processor
        self.max_context_length = max_context_length
        self.max_response_length = max_response_length

    def _turns(self, example: dict[str, Any]) -> list[dict[str, Any]]:
        turns = []
        for t, turn in enumerate(example["context"]):
            image = to_pil(turn.get("image"))
            if image is None and not turn.get("text"):
                # the only turns with neither text nor image are photos loaded without their files
                raise MissingImageError(missing_image_message(str(example.get("dialogue_id")), f"context turn {t}"),
                                        field=f"context[{t}].image")
            turns.append({"speaker": turn.get("speaker") or "", "text": turn.get("text"), "image": image})
        return turns

    def _response(self, example: dict[str, Any]) -> tuple[dict[str, Any], str]:
        response = example["response"]
        modality = response.get("modality")
        if modality not in RESPONSE_MODALITIES:
            raise ValueError(f"dialogue {example.get('dialogue_id')!r}: response modality must be one of "
                             f"{RESPONSE_MODALITIES}, got {modality!r}")
        response_id = response.get("id")
        if modality == "image":
            image = to_pil(response.get("image"))
            if image is None:
                raise MissingImageError(missing_image_message(str(example.get("dialogue_id")), "the image response"),
                                        field="response.image")
            if response_id is None:
                raise ValueError(f"dialogue {example.get('dialogue_id')!r}: an image response needs an `id`")
            return {"modality": "image", "text": None, "image": image}, response_id
        text = response.get("text")
        if text is None:
            raise ValueError(f"dialogue {example.get('dialogue_id')!r}: a text response needs a `text` value")
        return {"modality": "text", "text": text, "image": None}, response_id or text_response_id(text)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        dialogues, responses, ids = [], [], []
        for example in examples:
            dialogues.append(self._turns(example))
            response, response_id = self._response(example)
            responses.append(response)
            ids.append(response_id_hash(response_id))
        kwargs = {}
        if self.max_context_length is not None:
            kwargs["max_context_length"] = self.max_context_length
        if self.max_response_length is not None:
            kwargs["max_response_length"] = self.max_response_length
        batch = self.processor(dialogues=dialogues, responses=responses, return_tensors="pt", **kwargs)
        batch["response_ids"] = torch.tensor(ids, dtype=torch.long)
        batch["labels"] = batch["response_modality"].clone()
        return batch
