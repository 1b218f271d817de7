"""Candidate responses of a :class:`~hf_dialret.retrieval.ResponseIndex`: what users pass in, what is stored.

Users hand over candidates in whatever form they already have them: a list of texts, image files, PIL images, a
``datasets`` column (texts, decoded images or ``Image(decode=False)`` dicts), or explicit dicts. This module turns
all of these into one record type, :class:`Candidate`, whose fields are exactly what the index stores on disk (the
text, the image path, or the encoded image bytes of an in-memory image), so a search hit can hand back "the
candidate itself" after a save/load round trip.
"""

from __future__ import annotations

import io
import os
import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..modeling.modeling_outputs import RESPONSE_MODALITIES

TEXT_MODALITY, IMAGE_MODALITY = RESPONSE_MODALITIES


@dataclass(frozen=True, slots=True)  # slots: an index of millions of candidates holds millions of these
class Candidate:
    """One candidate response as stored in the index.

    Exactly one of ``text`` (text candidates) or ``image_path`` / ``image_bytes`` (image candidates) is set. In-memory
    images without a file are kept as PNG bytes, because a path is the only other way to get them back after a reload.
    """

    modality: str
    text: str | None = None
    image_path: str | None = None
    image_bytes: bytes | None = None

    def load_image(self) -> Image.Image:
        """Decode the image of an image candidate as RGB."""
        if self.modality != IMAGE_MODALITY:
            raise ValueError(f"candidate is a {self.modality} candidate, it has no image")
        if self.image_bytes is not None:
            return _open_rgb(io.BytesIO(self.image_bytes), "<in-memory image>")
        if self.image_path is None:
            raise ValueError("this image candidate was indexed from a bare embedding and has no image")
        return _open_rgb(self.image_path, self.image_path)

    @property
    def value(self) -> str | Image.Image | None:
        """The candidate itself: its text, its image path, or (in-memory images) the decoded image.

        None only for indexes built from bare embeddings without candidate payloads.
        """
        if self.modality == TEXT_MODALITY:
            return self.text
        if self.image_path is not None:
            return self.image_path
        return self.load_image() if self.image_bytes is not None else None


def _short(value: Any) -> str:
    # Candidates can hold image bytes: never paste megabytes into an error message.
    return reprlib.Repr(maxstring=60, maxother=60).repr(value)


def _open_rgb(source: Any, name: str) -> Image.Image:
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image candidate {name!r} does not exist") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode image candidate {name!r}: {error}") from error


def _image_candidate(value: Any, where: str) -> Candidate:
    if isinstance(value, Image.Image):
        # Keep the file's path when PIL knows it (Image.open sets .filename): cheaper than re-encoding the pixels.
        filename = getattr(value, "filename", "") or ""
        if filename and os.path.isfile(filename):
            return Candidate(IMAGE_MODALITY, image_path=os.path.abspath(filename))
        buffer = io.BytesIO()
        value.convert("RGB").save(buffer, format="PNG")
        return Candidate(IMAGE_MODALITY, image_bytes=buffer.getvalue())
    if isinstance(value, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(value))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: image file {os.fspath(value)!r} does not exist")
        return Candidate(IMAGE_MODALITY, image_path=path)
    if isinstance(value, dict) and ("path" in value or "bytes" in value):
        # A datasets Image(decode=False) cell: {"bytes": ..., "path": ...}; bytes win, they need no file.
        if value.get("bytes"):
            return Candidate(IMAGE_MODALITY, image_bytes=bytes(value["bytes"]))
        if value.get("path"):
            return _image_candidate(value["path"], where)
    raise TypeError(f"{where}: cannot read an image from a {type(value).__name__}")


def to_candidate(value: Any, where: str = "candidate") -> Candidate:
    """Convert one user-given candidate.

    ``str`` is a text; ``pathlib.Path`` and ``PIL.Image`` are images; a dict is read by its keys: ``{"text": ...}``,
    ``{"image": <path | PIL image | {"bytes", "path"}>}``, or the unified schema's response dict with ``"modality"``.
    A plain ``str`` is never taken for an image path (a reply can look like a file name): pass image paths through
    ``images=`` or as ``Path`` objects.
    """
    if isinstance(value, Candidate):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: empty text candidate")
        return Candidate(TEXT_MODALITY, text=value)
    if isinstance(value, (Image.Image, Path)):
        return _image_candidate(value, where)
    if isinstance(value, dict) and "modality" not in value and ("bytes" in value or "path" in value):
        return _image_candidate(value, where)  # a datasets Image(decode=False) cell
    if isinstance(value, dict):
        modality = value.get("modality")
        if modality is None:
            modality = IMAGE_MODALITY if value.get("image") is not None else TEXT_MODALITY
        if modality == TEXT_MODALITY:
            text = value.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{where}: a text candidate needs a string 'text' field, got {_short(value)}")
            return to_candidate(text, where)
        if modality == IMAGE_MODALITY:
            if value.get("image") is None:
                raise ValueError(f"{where}: an image candidate needs an 'image' field, got keys {sorted(value)}")
            return _image_candidate(value["image"], where)
        raise ValueError(f"{where}: unknown modality {modality!r}; expected one of {RESPONSE_MODALITIES}")
    raise TypeError(
        f"{where}: cannot use a {type(value).__name__} as a candidate; pass a str (text), a pathlib.Path or "
        "PIL.Image (image), or a dict with a 'text' or 'image' field"
    )


def iter_candidates(
    candidates: Iterable[Any] | None = None,
    texts: Iterable[str] | None = None,
    images: Iterable[Any] | None = None,
) -> Iterator[Candidate]:
    """Yield :class:`Candidate` records lazily, texts first, then images, then the mixed ``candidates``.

    Lazy so that a large ``datasets`` image column is decoded one batch at a time, never all at once.
    """
    for i, text in enumerate(texts or ()):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}]: expected a str, got {type(text).__name__}")
        yield to_candidate(text, f"texts[{i}]")
    for i, image in enumerate(images or ()):
        yield _image_candidate(image, f"images[{i}]")
    for i, value in enumerate(candidates or ()):
        yield to_candidate(value, f"candidates[{i}]")


def count_hint(*sources: Iterable[Any] | None) -> int | None:
    """Total length of the sources when all of them know it (for the progress bar), else None."""
    total = 0
    for source in sources:
        if source is None:
            continue
        try:
            total += len(source)  # type: ignore[arg-type]
        except TypeError:
            return None
    return total


@dataclass(frozen=True)
class RetrievalHit:
    """One ranked search result: the candidate's id in the index, its modality, its cosine score, the candidate."""

    id: int
    score: float
    modality: str
    candidate: Candidate

    @property
    def value(self) -> Any:
        """The candidate itself: the text, the image path, or (in-memory images) the decoded PIL image."""
        return self.candidate.value

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "modality": self.modality, self.modality: self.value}


def precomputed_candidate(value: Any, modality: str) -> Candidate:
    """Payload of a precomputed embedding: a str is the text, or the image path (not opened: nothing is encoded)."""
    if isinstance(value, Candidate):
        return value
    if isinstance(value, str):
        return Candidate(modality, text=value) if modality == "text" else Candidate(modality, image_path=value)
    return to_candidate(value)
