"""On-disk format of a :class:`~hf_dialret.retrieval.ResponseIndex`, written atomically, never pickled.

A saved index is a directory::

    index_config.json     format version, dim, FAISS factory string, model identity, probe vector, counts
    candidates.parquet    one row per candidate in id order: modality, text, image_path, image_bytes
    text.faiss            FAISS's own serialisation (faiss.write_index) of the text sub-index, if any
    image.faiss           ... of the image sub-index, if any

It is written into a fresh temporary directory beside the target and renamed into place, so a crash mid-save
leaves the previous index untouched (and at worst a ``.<name>.tmp-*`` directory, never a half-written index).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from .candidates import Candidate

FORMAT_VERSION = 1
CONFIG_NAME = "index_config.json"
CANDIDATES_NAME = "candidates.parquet"
FAISS_SUFFIX = ".faiss"

_SCHEMA = pa.schema(
    [
        ("modality", pa.string()),
        ("text", pa.string()),
        ("image_path", pa.string()),
        ("image_bytes", pa.binary()),
    ]
)


def _fsync_dir(path: Path) -> None:
    # Makes the renames themselves durable; not every platform can open a directory, which is harmless there.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_file():
            with open(child, "rb+") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(path)


def atomic_write_dir(target: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` and move the result to ``target``, replacing a previous index there.

    Refuses to replace a non-empty directory that is not a saved index, so a wrong path cannot wipe user files.
    """
    target = Path(target).absolute()
    if target.exists():
        if not target.is_dir():
            raise NotADirectoryError(f"cannot save an index to {target}: it is a file")
        if any(target.iterdir()) and not (target / CONFIG_NAME).is_file():
            raise FileExistsError(
                f"refusing to overwrite {target}: it is a non-empty directory without {CONFIG_NAME}, so not a "
                "saved ResponseIndex; choose an empty or new directory"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same parent directory as the target, so the final rename never crosses a file system.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        _fsync_tree(tmp)
        if target.exists():
            backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, backup)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(backup, target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_index_files(
    directory: Path,
    config: dict[str, Any],
    candidates: Sequence[Candidate],
    sub_indexes: dict[str, faiss.Index],
) -> None:
    """Write the files of a saved index into ``directory`` (the temporary one of :func:`atomic_write_dir`)."""
    for modality, index in sub_indexes.items():
        faiss.write_index(index, str(directory / f"{modality}{FAISS_SUFFIX}"))
    table = pa.Table.from_pydict(
        {
            "modality": [c.modality for c in candidates],
            "text": [c.text for c in candidates],
            "image_path": [c.image_path for c in candidates],
            "image_bytes": [c.image_bytes for c in candidates],
        },
        schema=_SCHEMA,
    )
    pq.write_table(table, directory / CANDIDATES_NAME)
    with open(directory / CONFIG_NAME, "w", encoding="utf-8") as handle:
        json.dump({"format_version": FORMAT_VERSION, **config}, handle, indent=2)
        handle.write("\n")


@contextlib.contextmanager
def reading(directory: Path, name: str) -> Iterator[None]:
    """Turn whatever a damaged file raises (pyarrow, FAISS, JSON, a missing file) into one clear ValueError."""
    try:
        yield
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory}: corrupted or incomplete ResponseIndex ({name}: "
                         f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                         "rebuild it with `hf-dialret index` or ResponseIndex.build(...).save()") from error


def read_index_files(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Candidate], dict[str, Any]]:
    """Read a saved index: its config, its candidates in id order, and its FAISS sub-indexes by modality."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        backups = sorted(directory.parent.glob(f".{directory.name}.old-*"))
        hint = f"; a previous index was left at {backups[-1]} by an interrupted save" if backups else ""
        raise FileNotFoundError(f"{directory} is not a saved ResponseIndex (no {CONFIG_NAME}){hint}")
    with reading(directory, CONFIG_NAME), open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: index format version {version!r} is not supported by this hf_dialret "
            f"(expected {FORMAT_VERSION}); rebuild the index with `hf-dialret index`"
        )
    with reading(directory, CANDIDATES_NAME):
        columns = pq.read_table(directory / CANDIDATES_NAME, schema=_SCHEMA).to_pydict()
    candidates = [
        Candidate(modality=m, text=t, image_path=p, image_bytes=b)
        for m, t, p, b in zip(columns["modality"], columns["text"], columns["image_path"], columns["image_bytes"])
    ]
    sub_indexes = {}
    for path in sorted(directory.glob(f"*{FAISS_SUFFIX}")):
        with reading(directory, path.name):
            sub_indexes[path.name[: -len(FAISS_SUFFIX)]] = faiss.read_index(str(path))
    return config, candidates, sub_indexes
