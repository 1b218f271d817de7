"""The unified example schema shared by every data source (see ``docs/internals.md``).

One row per retrieval example::

    dialogue_id: str
    context:  list of turns, oldest first: {"speaker": str, "text": str | None, "image": Image | None}
    response: {"modality": "text" | "image", "text": str | None, "image": Image | None, "id": str}
    candidates (optional): {"texts": list[str], "images": list[Image]}

``response.id`` identifies the response *content*: the normalised string of a text (:func:`text_response_id`), the
source's own id of an image (PhotoChat ``photo_id``, MMDialog media key, synthetic attribute key). Two examples with
the same id have the same response; the loss masks such duplicates and the evaluation counts them as correct.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable
from typing import Any

import datasets
from datasets import Features, Image, List, Value
from datasets.arrow_writer import ArrowWriter

#: Response modalities, index = label (0 = text, 1 = image); mirrors ``hf_dialret.modeling.modeling_outputs``.
RESPONSE_MODALITIES: tuple[str, str] = ("text", "image")

TURN_FEATURE = {"speaker": Value("string"), "text": Value("string"), "image": Image()}
RESPONSE_FEATURE = {"modality": Value("string"), "text": Value("string"), "image": Image(), "id": Value("string")}
CANDIDATES_FEATURE = {"texts": List(Value("string")), "images": List(Image())}

_SPACES = re.compile(r"\s+")


def unified_features(with_candidates: bool = False) -> Features:
    """The ``datasets.Features`` of a unified example; ``with_candidates`` adds the per-example negatives column."""
    features = {
        "dialogue_id": Value("string"),
        "context": List(TURN_FEATURE),
        "response": RESPONSE_FEATURE,
    }
    if with_candidates:
        features["candidates"] = CANDIDATES_FEATURE
    return Features(features)


def normalize_text(text: str) -> str:
    """Normalise a text for identity: NFKC, lower case, whitespace collapsed (so 'Hi  there' == 'hi there')."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def text_response_id(text: str) -> str:
    """``response.id`` of a text response."""
    return normalize_text(text)


def response_id_hash(response_id: str) -> int:
    """A stable non-negative 63-bit hash of a ``response.id`` (fits a signed int64 tensor).

    Python's ``hash`` is salted per process, so it would give different ids on different ranks of a distributed run;
    BLAKE2b is the same everywhere.
    """
    digest = hashlib.blake2b(response_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def text_turn(speaker: str, text: str) -> dict[str, Any]:
    return {"speaker": speaker, "text": text, "image": None}


def text_response(text: str) -> dict[str, Any]:
    return {"modality": "text", "text": text, "image": None, "id": text_response_id(text)}


def image_response(image: Any, response_id: str) -> dict[str, Any]:
    return {"modality": "image", "text": None, "image": image, "id": response_id}


def write_dataset(
    rows: Iterable[dict[str, Any]],
    features: Features,
    cache_dir: str | os.PathLike | None = None,
    split: str | None = None,
) -> datasets.Dataset:
    """Write ``rows`` to an Arrow file and memory-map it as a ``Dataset``.

    Rows are encoded one at a time, so memory stays flat however large the source is. ``Dataset.from_generator`` is
    not used on purpose: its fingerprint cache would return a stale result after the source file changed and would
    skip the reader, hence the ``on_error="skip"`` report. Without ``cache_dir`` the file goes to the temporary
    directory that ``datasets`` deletes at interpreter exit.
    """
    directory = os.fspath(cache_dir) if cache_dir is not None else datasets.fingerprint.get_temporary_cache_files_directory()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"hf_dialret-{uuid.uuid4().hex}.arrow")
    writer = ArrowWriter(features=features, path=path, writer_batch_size=1000)
    try:
        for row in rows:
            # the builder encodes before writing too: ArrowWriter expects storage values (Image -> bytes/path struct)
            writer.write(features.encode_example(row))
        writer.finalize()
    finally:
        writer.close()
    info = datasets.DatasetInfo(features=features)
    return datasets.Dataset.from_file(path, info=info, split=datasets.NamedSplit(split) if split else None)

