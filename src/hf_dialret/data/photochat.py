"""PhotoChat (Zang et al., ACL 2021) as unified retrieval examples.

Layout accepted for ``data_dir``: the official tree (``train/train_00.json`` ... ``train/train_20.json``, ``dev/``,
``test/``), a flat folder of shards (``test_00.json`` ...), or a single JSON file. Shards are JSON arrays of
dialogues; both published variants are read (with and without ``photo_id``).

Examples (``tasks``): each dialogue has exactly one shared photo. Its share turn ``t`` yields an **image-response**
example whose context is the turns before it (``dialogue[:t]``); every text message after the first yields a
**text-response** example (context = everything before it, the shared photo included when it came earlier). The
first message has no context and is never a target. The intent label is the response modality.

Speakers are ``"0"``/``"1"`` (``user_id``). With ``merge_consecutive=True`` consecutive *text* messages of one
speaker become one turn (joined by a space), as several PhotoChat baselines do; a photo is never merged. The default
keeps PhotoChat's messages as they are, which keeps one example per message.

Photos (see :func:`~hf_dialret.data.images.photochat_photo_candidates`) resolve from ``image_dir`` as
``<subset>/<id>.jpg`` or ``<id>.jpg``; ``response.id`` of a photo is its ``photo_id`` (``photo_url`` in the variant
without it), so a photo shared in several dialogues is one candidate. Without ``image_dir`` the images are ``None``
and :class:`~hf_dialret.data.DialogueRetrievalCollator` raises an error that explains how to get the photos.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from typing import Any

import datasets

from .errors import DataFormatError, ErrorReport, check_on_error, handle, log_summary
from .images import DEFAULT_MAX_PIXELS, photochat_photo_candidates, resolve_image
from .jsonio import iter_json_records
from .schema import image_response, text_response, text_turn, unified_features, write_dataset

_SPLIT_DIRS = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}
TASKS = ("image", "text")


def photochat_files(data_dir: str | os.PathLike, split: str) -> list[str]:
    """The shard files of ``split`` under ``data_dir`` (or ``[data_dir]`` when it is a file)."""
    path = os.fspath(data_dir)
    if os.path.isfile(path):
        return [path]
    if split not in _SPLIT_DIRS:
        raise ValueError(f"unknown PhotoChat split {split!r}; expected one of {sorted(_SPLIT_DIRS)}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"PhotoChat data_dir {path!r} does not exist")
    name = _SPLIT_DIRS[split]
    files = sorted(glob.glob(os.path.join(glob.escape(path), name, "*.json")))
    files = files or sorted(glob.glob(os.path.join(glob.escape(path), f"{name}_*.json")))
    if not files:
        raise FileNotFoundError(f"no PhotoChat shards for split {split!r} in {path!r} (looked for {name}/*.json and "
                                f"{name}_*.json)")
    return files


def _field(record: dict, name: str, types: type | tuple[type, ...], where: tuple[str, int], *,
           optional: bool = False, prefix: str = "") -> Any:
    file, index = where
    if name not in record or record[name] is None:
        if optional:
            return None
        raise DataFormatError("missing field", file, index, prefix + name)
    value = record[name]
    accepted = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass in Python: accept it only where a bool is expected
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
        names = " or ".join(t.__name__ for t in accepted)
        raise DataFormatError(f"expected {names}, got {type(value).__name__}", file, index, prefix + name)
    return value


def parse_dialogue(record: Any, file: str, index: int) -> tuple[str, list[dict], int, str | None, str | None]:
    """Validate one PhotoChat record; return (dialogue id, messages, share index, photo_id, photo_url)."""
    where = (file, index)
    if not isinstance(record, dict):
        raise DataFormatError(f"expected a JSON object, got {type(record).__name__}", file, index)
    dialogue = _field(record, "dialogue", list, where)
    dialogue_id = _field(record, "dialogue_id", (int, str), where)
    photo_id = _field(record, "photo_id", str, where, optional=True)
    photo_url = _field(record, "photo_url", str, where, optional=photo_id is not None)
    if not dialogue:
        raise DataFormatError("empty dialogue", file, index, "dialogue")
    messages, shares = [], []
    for t, turn in enumerate(dialogue):
        prefix = f"dialogue[{t}]."
        if not isinstance(turn, dict):
            raise DataFormatError(f"expected a JSON object, got {type(turn).__name__}", file, index, f"dialogue[{t}]")
        message = _field(turn, "message", str, where, prefix=prefix)
        share = _field(turn, "share_photo", bool, where, prefix=prefix)
        user = _field(turn, "user_id", int, where, prefix=prefix)
        if share:
            shares.append(t)
        elif not message.strip():
            raise DataFormatError("empty message in a turn that shares no photo", file, index, prefix + "message")
        messages.append({"speaker": str(user), "text": message, "share": share})
    if len(shares) != 1:
        what = "no shared photo" if not shares else f"{len(shares)} shared photos (turns {shares})"
        raise DataFormatError(f"a PhotoChat dialogue has exactly one shared photo, found {what}", file, index,
                              "dialogue[].share_photo")
    if photo_id is not None and (photo_id.count("/") != 1 or not all(photo_id.split("/"))):
        raise DataFormatError(f"photo_id {photo_id!r} is not '<subset>/<id>'", file, index, "photo_id")
    return str(dialogue_id), messages, shares[0], photo_id, photo_url


def _merge(messages: list[dict]) -> list[dict]:
    merged: list[dict] = []
    for message in messages:
        previous = merged[-1] if merged else None
        if previous and not message["share"] and not previous["share"] and previous["speaker"] == message["speaker"]:
            merged[-1] = {**previous, "text": previous["text"] + " " + message["text"]}
        else:
            merged.append(dict(message))
    return merged


def dialogue_examples(dialogue_id: str, messages: list[dict], image: Any, photo_ref: str,
                      tasks: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The unified examples of one validated dialogue (``image`` is the photo's Image value or ``None``)."""
    turns = [{"speaker": m["speaker"], "text": None, "image": image} if m["share"] else text_turn(m["speaker"], m["text"])
             for m in messages]
    for t in range(1, len(messages)):
        if messages[t]["share"] and "image" in tasks:
            yield {"dialogue_id": dialogue_id, "context": turns[:t], "response": image_response(image, photo_ref)}
        elif not messages[t]["share"] and "text" in tasks:
            yield {"dialogue_id": dialogue_id, "context": turns[:t], "response": text_response(messages[t]["text"])}


def iter_photochat(files: Sequence[str], split: str, image_dir: str | os.PathLike | None, tasks: Sequence[str],
                   merge_consecutive: bool, on_error: str, report: ErrorReport, max_pixels: int,
                   verify_images: bool) -> Iterator[dict[str, Any]]:
    """Yield unified examples from PhotoChat shard ``files``."""
    for file in files:
        for index, record in iter_json_records(file):
            try:
                if isinstance(record, DataFormatError):
                    raise record
                dialogue_id, messages, _, photo_id, photo_url = parse_dialogue(record, file, index)
                image = None
                if image_dir is not None:
                    field = "photo_id" if photo_id is not None else "photo_url"
                    path = resolve_image(image_dir, photochat_photo_candidates(photo_id, photo_url), max_pixels,
                                         verify_images, file=file, record=index, field=field)
                    image = {"path": path, "bytes": None}
            except DataFormatError as error:
                handle(error, on_error, report)
                continue
            if merge_consecutive:
                messages = _merge(messages)
            photo_ref = photo_id if photo_id is not None else str(photo_url)
            yield from dialogue_examples(f"photochat/{split}/{dialogue_id}", messages, image, photo_ref, tasks)


def load_photochat(
    data_dir: str | os.PathLike,
    split: str = "train",
    image_dir: str | os.PathLike | None = None,
    tasks: Sequence[str] = TASKS,
    *,
    merge_consecutive: bool = False,
    on_error: str = "raise",
    error_report: ErrorReport | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    verify_images: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load a PhotoChat split as a ``datasets.Dataset`` in the unified schema (see the module docstring).

    Args:
        data_dir: The PhotoChat folder (official or flat layout) or one shard file.
        split: ``"train"``, ``"validation"`` (alias ``"dev"``) or ``"test"``; ignored when ``data_dir`` is a file
            except in ``dialogue_id`` (``photochat/<split>/<id>``: PhotoChat ids restart at 0 in every split).
        image_dir: Folder with the Open Images photos; ``None`` keeps only the photo references.
        tasks: Which examples to make: ``"image"`` (photo responses) and/or ``"text"`` (text responses).
        merge_consecutive: Merge consecutive text messages of one speaker into one turn.
        on_error: ``"raise"`` a :class:`DataFormatError`, or ``"skip"`` the dialogue and count it. A file that is
            not valid JSON raises either way: PhotoChat files are JSON arrays, in which nothing after a syntax error
            can be located.
        error_report: Collects skipped records (a summary is logged either way).
        max_pixels: Photos larger than this are rejected as decompression bombs.
        verify_images: Also decode a reduced draft of each photo at load time to catch corrupt files early.
        cache_dir: Where the Arrow file goes (default: a temporary directory removed at exit).
    """
    check_on_error(on_error)
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
    report = error_report if error_report is not None else ErrorReport()
    files = photochat_files(data_dir, split)
    rows = iter_photochat(files, split, image_dir, tuple(tasks), merge_consecutive, on_error, report, max_pixels,
                          verify_images)
    dataset = write_dataset(rows, unified_features(), cache_dir, split=split)
    log_summary(f"PhotoChat {split}", report)
    return dataset
