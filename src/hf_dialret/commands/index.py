"""``hf-dialret index``: encode a candidate pool with a saved retriever into a saved ``ResponseIndex``.

Candidates come from files (``.txt``: one text reply per line; ``.jsonl``: one object per line with a ``text`` or
an ``image`` field, image paths relative to the file) and/or image folders (every image file below them)::

    hf-dialret index --model runs/mdr --candidates replies.txt photos/ --output runs/mdr-index
    hf-dialret index --model runs/mdr --candidates more.jsonl --output runs/mdr-index --append
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass
class IndexArguments:
    model: str = field(metadata={"help": "Directory (or Hub id) of a saved hf_dialret retriever."})
    candidates: list[str] = field(
        metadata={"help": "Candidate sources: .txt (one text per line), .jsonl (text/image fields), image folders."}
    )
    output: str = field(metadata={"help": "Directory to save the index to (replaced atomically if it exists)."})
    factory: str = field(
        default="Flat",
        metadata={"help": "FAISS factory string: Flat (exact), or approximate e.g. HNSW32, IVF1024,PQ32, IVF256,Flat."},
    )
    search_parameters: str | None = field(
        default=None, metadata={"help": "Search-time FAISS parameters stored with the index, e.g. nprobe=32."}
    )
    append: bool = field(default=False, metadata={"help": "Add to the index already at --output instead of a new one."})
    batch_size: int = field(default=64, metadata={"help": "Candidates encoded per forward pass."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, or auto (CUDA when available)."})
    processor: str | None = field(default=None, metadata={"help": "Processor directory, when not beside the model."})
    no_check: bool = field(
        default=False, metadata={"help": "With --append: skip the check that the index was built with this model."}
    )


def _texts_file(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            text = line.rstrip("\n")
            if not text.strip():
                raise ValueError(f"{path}:{line_number}: empty line (one non-empty candidate text per line)")
            yield text


def _jsonl_file(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: malformed JSON ({error.msg})") from None
            if not isinstance(record, dict) or (record.get("text") is None) == (record.get("image") is None):
                raise ValueError(f"{path}:{line_number}: each record needs exactly one of 'text' or 'image'")
            if record.get("image") is not None:
                # Relative image paths are relative to the JSONL file, not to the current directory.
                yield {"image": path.parent / record["image"]}
            else:
                yield {"text": record["text"]}


def iter_sources(sources: list[str]) -> Iterator[Any]:
    """Candidates of every source, in order; clear errors name the file and line."""
    for source in sources:
        path = Path(source)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise ValueError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            yield from images
        elif not path.is_file():
            raise FileNotFoundError(f"candidate source {source} does not exist")
        elif path.suffix.lower() == ".jsonl":
            yield from _jsonl_file(path)
        elif path.suffix.lower() == ".txt":
            yield from _texts_file(path)
        else:
            raise ValueError(f"{path}: unknown candidate file type; use .txt, .jsonl or an image folder")


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser(IndexArguments, prog="hf-dialret index", description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    from ..retrieval import ResponseIndex
    from ..retrieval.loading import load_retriever

    if args.append and args.factory != "Flat":  # an existing index keeps the factory it was built with
        print("hf-dialret index: error: --factory applies to a new index; --append adds to the one at --output with "
              "its own factory", file=sys.stderr)
        return 1
    try:
        model, processor = load_retriever(args.model, args.device, args.processor)
        if args.append:
            index = ResponseIndex.load(args.output, model, processor, check_model=not args.no_check)
            index.batch_size = args.batch_size
            ids = index.add(iter_sources(args.candidates))
        else:
            index = ResponseIndex.build(
                model, processor, iter_sources(args.candidates), factory=args.factory, batch_size=args.batch_size
            )
            ids = list(range(len(index)))
        if not ids:
            raise ValueError(f"no candidates in {', '.join(args.candidates)}: nothing to index")
        if args.search_parameters:
            index.set_search_parameters(args.search_parameters)
        index.save(args.output)
    except (OSError, ValueError, TypeError) as error:
        print(f"hf-dialret index: error: {error}", file=sys.stderr)
        return 1
    print(f"indexed {len(ids)} candidates -> {args.output} ({index})")
    return 0
