"""``DialCLIPProcessor``: dialogues and candidate responses → DialCLIP inputs (CLIP tokenizer + CLIP image processor).

A flat file (transformers + PIL only) so that it can ship with a saved model as remote code. It produces the keys of
docs/internals.md with DialCLIP's meaning of the context: ``input_ids``/``attention_mask`` are the *current turn*
(the query text CLIP's text tower reads, ≤ 77 tokens), and the earlier turns go to the Context Prompt Generator as

| key | shape | meaning |
|---|---|---|
| ``context_input_ids``, ``context_attention_mask`` | (Nt, Lt) | one row per context turn with text, oldest first |
| ``context_text_batch_index`` | (Nt,) long | the dialogue (batch row) of each text row |
| ``context_pixel_values`` | (Ni, 3, H, W) | context images (the current turn's image too), oldest first |
| ``context_image_batch_index`` | (Ni,) long | the dialogue of each image |

Context keys are present only when the batch has such turns. Every text is truncated to the CLIP text tower's
position limit (77 for real CLIP), keeping ``<|startoftext|>`` and ``<|endoftext|>``, where CLIP pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

from .configuration_dialclip import CLIP_MAX_TEXT_POSITIONS
from .processing_inputs import Response, Turn, as_dialogue_batch, parse_responses



def _rgb(image: Image.Image) -> Image.Image:
    # CLIP's image processor normalises three channels; grayscale/RGBA/palette images would fail or mislead.
    return image if image.mode == "RGB" else image.convert("RGB")


class DialCLIPProcessor(ProcessorMixin):
    r"""CLIP tokenizer + CLIP image processor (`CLIPImageProcessorPil`) for [`DialCLIPModel`].

    Args:
        image_processor ([`BaseImageProcessor`]): CLIP image processor of the backbone.
        tokenizer ([`PreTrainedTokenizerBase`]): CLIP tokenizer of the backbone.
        max_context_turns (`int`, *optional*, defaults to 8): Most recent turns before the current one that are kept
            as context (0: none; the current turn's own image is always kept).
        max_text_length (`int`, *optional*): Token limit of every text (query, context turn, response); defaults to
            the tokenizer's ``model_max_length`` capped at CLIP's 77 positions. Larger values are rejected.
    """

    def __init__(self, image_processor=None, tokenizer=None, max_context_turns: int = 8,
                 max_text_length: int | None = None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)
        if max_context_turns < 0:
            raise ValueError(f"max_context_turns must be >= 0, got {max_context_turns}")
        limit = min(int(getattr(tokenizer, "model_max_length", CLIP_MAX_TEXT_POSITIONS)), CLIP_MAX_TEXT_POSITIONS)
        if max_text_length is not None and not 3 <= max_text_length <= CLIP_MAX_TEXT_POSITIONS:
            raise ValueError(
                f"max_text_length must be in [3, {CLIP_MAX_TEXT_POSITIONS}] (CLIP's text tower has "
                f"{CLIP_MAX_TEXT_POSITIONS} positions), got {max_text_length}"
            )
        self.max_context_turns = max_context_turns
        self.max_text_length = max_text_length if max_text_length is not None else limit

    @property
    def model_input_names(self) -> list[str]:
        return [
            "input_ids", "attention_mask", "context_input_ids", "context_attention_mask", "context_text_batch_index",
            "context_pixel_values", "context_image_batch_index", "response_input_ids", "response_attention_mask",
            "response_pixel_values", "response_modality",
        ]

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_text_length,
                              return_tensors="pt")

    @staticmethod
    def _turn(turn: Turn) -> tuple[str, Image.Image | None]:
        if isinstance(turn, str):
            return turn, None
        if not isinstance(turn, dict):
            raise TypeError(f"A turn must be a dict with speaker/text/image or a string, got {type(turn).__name__}.")
        return turn.get("text") or "", turn.get("image")

    def _encode_dialogues(self, dialogues: Sequence[Sequence[Turn]]) -> dict[str, torch.Tensor]:
        queries: list[str] = []
        texts: list[str] = []
        text_rows: list[int] = []
        images: list[Image.Image] = []
        image_rows: list[int] = []
        for row, dialogue in enumerate(dialogues):
            if len(dialogue) == 0:
                raise ValueError(f"Dialogue {row} of the batch has no turns; DialCLIP needs at least the current turn.")
            *history, current = [self._turn(t) for t in dialogue]
            history = history[-self.max_context_turns:] if self.max_context_turns else []
            for text, image in history:
                if image is not None:
                    images.append(_rgb(image))
                    image_rows.append(row)
                if text.strip():
                    texts.append(text)
                    text_rows.append(row)
            query, image = current
            if image is not None:  # CLIP's text tower reads the query; a shared photo reaches it as context
                images.append(_rgb(image))
                image_rows.append(row)
            queries.append(query)
        data = dict(self._tokenize(queries))
        if texts:
            encoded = self._tokenize(texts)
            data["context_input_ids"] = encoded["input_ids"]
            data["context_attention_mask"] = encoded["attention_mask"]
            data["context_text_batch_index"] = torch.tensor(text_rows, dtype=torch.long)
        if images:
            data["context_pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
            data["context_image_batch_index"] = torch.tensor(image_rows, dtype=torch.long)
        return data

    def __call__(
        self,
        dialogues: Sequence[Turn] | Sequence[Sequence[Turn]] | None = None,
        responses: Response | Sequence[Response] | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Return a `BatchFeature` with the keys above and those of docs/internals.md (only for inputs given)."""
        if return_tensors not in ("pt", None):
            raise ValueError(f"DialCLIPProcessor returns PyTorch tensors only, got return_tensors={return_tensors!r}.")
        data: dict[str, torch.Tensor] = {}
        if dialogues is not None:
            data.update(self._encode_dialogues(as_dialogue_batch(dialogues)))
        if responses is not None:
            parts = parse_responses(responses)
            texts = [text for modality, text, _ in parts if modality == 0]
            images = [_rgb(image) for modality, _, image in parts if modality == 1]
            if texts:
                encoded = self._tokenize(texts)
                data["response_input_ids"] = encoded["input_ids"]
                data["response_attention_mask"] = encoded["attention_mask"]
            if images:
                data["response_pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
            data["response_modality"] = torch.tensor([modality for modality, _, _ in parts], dtype=torch.long)
        return BatchFeature(data)


__all__ = ["DialCLIPProcessor"]
