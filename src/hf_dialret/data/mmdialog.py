"""MMDialog (Feng et al., ACL 2023) as unified retrieval examples.

Layout: ``<data_dir>/{train,valid,test}/conversations.json`` with the images ``<media_key>.jpg`` beside it;
``data_dir`` may also be the split folder itself or the ``conversations.json`` file. The file is JSON Lines (as the
public sample) or one JSON array (both are read, record by record). A record::

    {"conversation_id": int, "conversation": [{"turn": [{"__TEXT__": str}, {"__MEDIA__": str}, ...]}, ...],
     "negative_candidate_media_keys": [str] * 999, "negative_candidate_texts": [str] * 999}   # valid/test only

Turn elements are found by key, never by position. Media keys are opaque strings (signed int64 in decimal; never
cast to int, and joined onto the image folder only after an escape check).

Examples: every element of turn ``t >= 1`` is a target -- its text gives a text-response example, each of its media
an image-response example -- with the elements of all earlier turns as context (each element its own unified turn:
the text, then the images, in order). MMDialog has no speakers, so ``speaker`` is ``""``. For valid/test the
dialogue's 999 + 999 negatives are attached to each of its examples as ``candidates`` (pool = positive + 999 per
modality). ``response.id`` is the normalised text or the media key.

``streaming=True`` returns a ``datasets.IterableDataset`` that reads the file lazily (the 1M-dialogue train split
never sits in memory); otherwise the rows are written to a memory-mapped Arrow file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import datasets

from .errors import DataFormatError, ErrorReport, check_on_error, handle, log_summary
from .images import DEFAULT_MAX_PIXELS, resolve_image, safe_join
from .jsonio import iter_json_records
from .schema import image_response, text_response, unified_features, write_dataset

_SPLIT_DIRS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
TEXT_KEY, MEDIA_KEY = "__TEXT__", "__MEDIA__"
NEGATIVE_TEXTS, NEGATIVE_MEDIA = "negative_candidate_texts", "negative_candidate_media_keys"


def mmdialog_file(data_dir: str | os.PathLike, split: str) -> str:
    """Locate ``conversations.json`` of ``split`` (``data_dir`` may be the root, the split folder or the file)."""
    path = os.fspath(data_dir)
    if os.path.isfile(path):
        return path
    if split not in _SPLIT_DIRS:
        raise ValueError(f"unknown MMDialog split {split!r}; expected one of {sorted(_SPLIT_DIRS)}")
    for candidate in (os.path.join(path, _SPLIT_DIRS[split], "conversations.json"),
                      os.path.join(path, "conversations.json")):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"no MMDialog conversations.json for split {split!r} under {path!r}")


def _string_list(record: dict, name: str, file: str, index: int) -> list[str]:
    if name not in record:
        raise DataFormatError("missing field (valid/test records carry 999 negatives per modality)", file, index, name)
    values = record[name]
    if not isinstance(values, list):
        raise DataFormatError(f"expected a list, got {type(values).__name__}", file, index, name)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataFormatError(f"expected str, got {type(value).__name__}", file, index, f"{name}[{i}]")
    return values


def parse_conversation(record: Any, file: str, index: int) -> tuple[str, list[tuple[str | None, list[str]]]]:
    """Validate one record; return (conversation id, [(text or None, [media keys]) per turn])."""
    if not isinstance(record, dict):
        raise DataFormatError(f"expected a JSON object, got {type(record).__name__}", file, index)
    if "conversation_id" not in record:
        raise DataFormatError("missing field", file, index, "conversation_id")
    conversation_id = record["conversation_id"]
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, (int, str)):
        raise DataFormatError(f"expected int, got {type(conversation_id).__name__}", file, index, "conversation_id")
    conversation = record.get("conversation")
    if not isinstance(conversation, list):
        raise DataFormatError("missing field" if conversation is None else
                              f"expected a list, got {type(conversation).__name__}", file, index, "conversation")
    if not conversation:
        raise DataFormatError("empty dialogue", file, index, "conversation")
    turns = []
    for t, entry in enumerate(conversation):
        field = f"conversation[{t}].turn"
        elements = entry.get("turn") if isinstance(entry, dict) else None
        if not isinstance(elements, list):
            raise DataFormatError("expected an object with a 'turn' list", file, index, field)
        texts, media = [], []
        for e, element in enumerate(elements):
            if not isinstance(element, dict) or not ({TEXT_KEY, MEDIA_KEY} & element.keys()):
                raise DataFormatError(f"expected an object with {TEXT_KEY} or {MEDIA_KEY}", file, index,
                                      f"{field}[{e}]")
            for key, bucket in ((TEXT_KEY, texts), (MEDIA_KEY, media)):
                if key in element:
                    if not isinstance(element[key], str):
                        raise DataFormatError(f"expected str, got {type(element[key]).__name__}", file, index,
                                              f"{field}[{e}].{key}")
                    bucket.append(element[key])
        text = " ".join(s for s in texts if s.strip()) or None
        if text is None and not media:
            raise DataFormatError("empty turn (no text and no media)", file, index, field)
        turns.append((text, media))
    return str(conversation_id), turns


def _iter_mmdialog(files: Sequence[str], image_dir: str | None, with_candidates: bool, on_error: str,
                   report: ErrorReport, max_pixels: int, verify_images: bool) -> Iterator[dict[str, Any]]:
    for file in files:
        folder = image_dir if image_dir is not None else os.path.dirname(os.path.abspath(file))
        for index, record in iter_json_records(file):
            try:
                if isinstance(record, DataFormatError):
                    raise record
                conversation_id, turns = parse_conversation(record, file, index)
                images: dict[str, dict] = {}
                for t, (_, media) in enumerate(turns):
                    for key in media:
                        if key not in images:
                            path = resolve_image(folder, [f"{key}.jpg"], max_pixels, verify_images, file=file,
                                                 record=index, field=f"conversation[{t}].turn.{MEDIA_KEY}")
                            images[key] = {"path": path, "bytes": None}
                candidates = None
                if with_candidates:
                    texts = _string_list(record, NEGATIVE_TEXTS, file, index)
                    keys = _string_list(record, NEGATIVE_MEDIA, file, index)
                    candidate_images = []
                    for i, key in enumerate(keys):
                        # 999 per dialogue: a stat, not a decode, keeps loading a 10k-dialogue split affordable
                        path = safe_join(folder, f"{key}.jpg", file=file, record=index, field=f"{NEGATIVE_MEDIA}[{i}]")
                        if verify_images and not path.is_file():
                            raise DataFormatError(f"image file not found: {path}", file, index, f"{NEGATIVE_MEDIA}[{i}]")
                        candidate_images.append({"path": str(path), "bytes": None})
                    candidates = {"texts": texts, "images": candidate_images}
            except DataFormatError as error:
                handle(error, on_error, report)
                continue
            yield from _examples(f"mmdialog/{conversation_id}", turns, images, candidates)


def _examples(dialogue_id: str, turns: list[tuple[str | None, list[str]]], images: dict[str, dict],
              candidates: dict | None) -> Iterator[dict[str, Any]]:
    context: list[dict[str, Any]] = []
    for t, (text, media) in enumerate(turns):
        if t > 0:
            responses = ([text_response(text)] if text is not None else []) + [
                image_response(images[key], key) for key in media]
            for response in responses:
                row = {"dialogue_id": dialogue_id, "context": list(context), "response": response}
                if candidates is not None:
                    row["candidates"] = candidates
                yield row
        if text is not None:
            context.append({"speaker": "", "text": text, "image": None})
        context.extend({"speaker": "", "text": None, "image": images[key]} for key in media)


def _generate(files: list[str], image_dir: str | None, with_candidates: bool, on_error: str, report: ErrorReport,
              max_pixels: int, verify_images: bool) -> Iterator[dict[str, Any]]:
    # top-level function so that IterableDataset can re-run it on each iteration (and shard over `files`)
    yield from _iter_mmdialog(files, image_dir, with_candidates, on_error, report, max_pixels, verify_images)
    log_summary(f"MMDialog {', '.join(files)}", report)


def load_mmdialog(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    streaming: bool = False,
    image_dir: str | os.PathLike | None = None,
    candidates: bool | None = None,
    on_error: str = "raise",
    error_report: ErrorReport | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    verify_images: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load an MMDialog split in the unified schema (see the module docstring).

    Args:
        data_dir: The MMDialog root, a split folder, or a ``conversations.json`` file.
        split: ``"train"``, ``"validation"`` (alias ``"valid"``) or ``"test"``.
        streaming: Return an ``IterableDataset`` that reads lazily (for the 1M-dialogue train split).
        image_dir: Where ``<media_key>.jpg`` live (default: beside ``conversations.json``).
        candidates: Attach the 999 + 999 negatives as ``candidates`` (default: for valid/test, not for train).
        on_error: ``"raise"`` a :class:`DataFormatError`, or ``"skip"`` the conversation and count it.
        error_report: Collects skipped records (a summary is logged either way). A streamed dataset adds to it on
            every pass over the data (each epoch, each re-iteration): call ``error_report.reset()`` between passes
            to count one.
        max_pixels: Images larger than this are rejected as decompression bombs.
        verify_images: Check context/response images (header + draft decode) and the existence of candidate
            images at load time; ``False`` only checks that references stay inside the image folder.
        cache_dir: Where the Arrow file goes when not streaming (default: a temporary directory removed at exit).
    """
    check_on_error(on_error)
    file = mmdialog_file(data_dir, split)
    with_candidates = (_SPLIT_DIRS.get(split) != "train") if candidates is None else candidates
    report = error_report if error_report is not None else ErrorReport()
    features = unified_features(with_candidates=with_candidates)
    kwargs = {"files": [file], "image_dir": None if image_dir is None else os.fspath(image_dir),
              "with_candidates": with_candidates, "on_error": on_error, "report": report, "max_pixels": max_pixels,
              "verify_images": verify_images}
    if streaming:
        return datasets.IterableDataset.from_generator(_generate, features=features, gen_kwargs=kwargs)
    return write_dataset(_generate(**kwargs), features, cache_dir, split=split)
