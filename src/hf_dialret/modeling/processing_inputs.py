"""Input types shared by the processors: what a dialogue turn and a candidate response may be.

A flat file with no package imports, so that it ships with the processors as remote code.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

#: A dialogue turn: ``{"speaker", "text", "image"}`` (any of them may be missing) or a plain string (text only).
Turn = dict[str, Any] | str
#: A response: ``{"modality", "text", "image"}``, a string (text) or a PIL image.
Response = dict[str, Any] | str | Image.Image


def parse_response(response: Response) -> tuple[int, str | None, Image.Image | None]:
    """``(modality, text, image)`` of a response, modality 0 = text, 1 = image; clear errors for anything else."""
    if isinstance(response, str):
        return 0, response, None
    if isinstance(response, Image.Image):
        return 1, None, response
    if isinstance(response, dict):
        modality = response.get("modality")
        if modality == "text" or (modality is None and response.get("text") is not None):
            if response.get("text") is None:
                raise ValueError("A text response needs a `text` value.")
            return 0, response["text"], None
        if modality == "image" or (modality is None and response.get("image") is not None):
            if response.get("image") is None:
                raise ValueError("An image response needs an `image` value.")
            return 1, None, response["image"]
        if modality is None:
            raise ValueError("A response needs a `text` or an `image` (both are missing or None).")
        raise ValueError(f"Response modality must be 'text' or 'image', got {modality!r}.")
    raise TypeError(f"A response must be a dict, a str or a PIL image, got {type(response).__name__}.")


def as_dialogue_batch(dialogues: Any) -> list:
    """A list of dialogues: a single dialogue (a list of turns) is wrapped into a batch of one."""
    if len(dialogues) > 0 and isinstance(dialogues[0], (dict, str)):
        return [dialogues]
    return list(dialogues)


def parse_responses(responses: Any) -> list[tuple[int, str | None, Image.Image | None]]:
    """:func:`parse_response` over a batch; a single response is a batch of one."""
    if isinstance(responses, (dict, str, Image.Image)):
        responses = [responses]
    return [parse_response(response) for response in responses]
