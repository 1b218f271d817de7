"""``hf-dialret search``: query a saved ``ResponseIndex`` with a dialogue from the command line.

The dialogue is given as repeated ``--turn`` arguments (oldest first) or as a JSON file: a list of turns (strings or
``{"speaker", "text", "image"}`` dicts), an object with a ``"context"`` list (a unified-schema example), or a list of
such dialogues::

    hf-dialret search --index runs/mdr-index --turn "I got a puppy" --turn "show me!" --top_k 3
    hf-dialret search --index runs/mdr-index --dialogue chat.json --json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import HfArgumentParser


@dataclass
class SearchArguments:
    index: str = field(metadata={"help": "Directory of an index saved by `hf-dialret index`."})
    model: str | None = field(
        default=None, metadata={"help": "Model directory or Hub id; defaults to the one recorded in the index."}
    )
    turn: list[str] | None = field(
        default=None, metadata={"help": "One dialogue turn, oldest first; repeat for each turn.", "action": "append"}
    )
    dialogue: str | None = field(default=None, metadata={"help": "JSON file with the dialogue(s), instead of --turn."})
    top_k: int = field(default=10, metadata={"help": "Number of responses to return per dialogue."})
    modality: Literal["auto", "both", "text", "image"] = field(
        default="auto",
        metadata={"help": "auto (DR/SDR: predicted modality; MDR/DialCLIP: joint pool), both, text or image."},
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, or auto (CUDA when available)."})
    processor: str | None = field(default=None, metadata={"help": "Processor directory, when not beside the model."})
    json: bool = field(default=False, metadata={"help": "Print the hits as JSON (one list per dialogue)."})
    no_check: bool = field(
        default=False, metadata={"help": "Skip the check that the index was built with this model's weights."}
    )


def _load_dialogues(args: SearchArguments) -> list[Any]:
    if (args.turn is None) == (args.dialogue is None):
        raise ValueError("give the dialogue either as --turn arguments or as --dialogue FILE.json (one of them)")
    if args.turn is not None:
        # argparse "append" + nargs="+": each --turn gives a list; `--turn a b` also works (two turns).
        return [[text for group in args.turn for text in group]]
    path = Path(args.dialogue)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"dialogue file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error.msg} at line {error.lineno})") from None
    dialogues = data if isinstance(data, list) and data and all(isinstance(d, (list, dict)) and
                                                                 not _is_turn(d) for d in data) else [data]
    out = []
    for i, dialogue in enumerate(dialogues):
        if isinstance(dialogue, dict):
            if "context" not in dialogue:
                raise ValueError(f"{path}: dialogue {i} is an object without a 'context' list of turns")
            dialogue = dialogue["context"]
        if not isinstance(dialogue, list) or not dialogue:
            raise ValueError(f"{path}: dialogue {i} must be a non-empty list of turns")
        out.append([_resolve_image(turn, path.parent) for turn in dialogue])
    return out


def _is_turn(value: Any) -> bool:
    return isinstance(value, dict) and ("text" in value or "image" in value or "content" in value)


def _resolve_image(turn: Any, base: Path) -> Any:
    # Image paths in a dialogue file are relative to that file, like candidate files for `hf-dialret index`.
    if isinstance(turn, dict) and isinstance(turn.get("image"), str):
        return {**turn, "image": str(base / turn["image"])}
    return turn


def _model_source(args: SearchArguments) -> str:
    if args.model:
        return args.model
    config_path = Path(args.index) / "index_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{args.index} is not a saved ResponseIndex (no index_config.json)")
    recorded = (json.loads(config_path.read_text(encoding="utf-8")).get("model") or {}).get("name_or_path")
    if not recorded:
        raise ValueError(f"{args.index} does not record the model that built it; pass --model")
    return recorded


def _describe(hit: dict[str, Any]) -> str:
    value = hit.get(hit["modality"])
    shown = value if isinstance(value, str) else f"<in-memory image #{hit['id']}>"
    return f"[{hit['modality']:>5}] {hit['score']:+.4f}  {shown}"


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser(SearchArguments, prog="hf-dialret search", description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    from ..retrieval import ResponseIndex
    from ..retrieval.loading import load_retriever

    try:
        dialogues = _load_dialogues(args)
        model, processor = load_retriever(_model_source(args), args.device, args.processor)
        index = ResponseIndex.load(args.index, model, processor, check_model=not args.no_check)
        results = index.search(dialogues, args.top_k, modality=args.modality)
    except (OSError, ValueError, TypeError) as error:
        print(f"hf-dialret search: error: {error}", file=sys.stderr)
        return 1
    rows = [[hit.to_dict() for hit in hits] for hits in results]
    if args.json:
        for row in rows:
            for hit in row:  # in-memory images are not JSON: report them by id
                if not isinstance(hit.get(hit["modality"]), str):
                    hit[hit["modality"]] = None
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2, ensure_ascii=False))
        return 0
    for i, row in enumerate(rows):
        if len(rows) > 1:
            print(f"dialogue {i}:")
        for rank, hit in enumerate(row, 1):
            print(f"{rank:>3}. {_describe(hit)}")
    return 0
