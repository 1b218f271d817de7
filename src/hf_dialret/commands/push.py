"""``hf-dialret push``: publish a saved retriever (or DialCLIP adapter) with its processor and a model card.

The card's recall table comes from ``eval_results.json`` beside the model (or ``--eval_results``); training
settings from the Trainer's ``trainer_state.json`` when present, else from that file's ``training`` block.
``--output_dir`` writes the files that would be uploaded to a local folder instead (no network)::

    hf-dialret push --model runs/mdr --repo_id me/mdr-photochat --datasets photochat
    hf-dialret push --model runs/mdr --repo_id me/mdr-photochat --output_dir /tmp/preview
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Directory of a saved retriever or DialCLIP adapter."})
    repo_id: str = field(metadata={"help": "Hub repository, e.g. me/mdr-photochat (created if missing)."})
    eval_results: str | None = field(
        default=None, metadata={"help": "Evaluation results JSON; default: <model>/eval_results.json if present."}
    )
    eval_dataset: str | None = field(default=None, metadata={"help": "Name of the evaluation dataset for the card."})
    eval_split: str | None = field(default=None, metadata={"help": "Split the results were computed on (test)."})
    datasets: list[str] | None = field(default=None, metadata={"help": "Training datasets (names or Hub ids)."})
    training_data: str | None = field(default=None, metadata={"help": "Free-text description of the training data."})
    license: str = field(default="apache-2.0", metadata={"help": "License identifier for the card metadata."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    no_validate: bool = field(default=False, metadata={"help": "Skip the Hub's check of the card metadata."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Write the files that would be uploaded here instead of pushing."}
    )


def training_details(model_dir: Path, eval_results: str | None = None) -> dict[str, Any]:
    """A few settings of the run: from the Trainer's ``trainer_state.json`` when it is beside the model (a checkpoint
    directory), else from the ``"training"`` block that ``hf-dialret train`` writes into ``eval_results.json``."""
    path = model_dir / "trainer_state.json"
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        names = {"global_step": "optimizer steps", "num_train_epochs": "epochs",
                 "train_batch_size": "batch size per device"}
        return {label: state[key] for key, label in names.items() if state.get(key) is not None}
    if eval_results is None or not Path(eval_results).is_file():
        return {}
    report = json.loads(Path(eval_results).read_text(encoding="utf-8"))
    training = report.get("training") if isinstance(report, dict) else None
    if not isinstance(training, dict):
        return {}
    names = {"steps": "optimizer steps", "batch_size": "batch size per device", "learning_rate": "peak learning rate",
             "examples_seen": "training examples seen", "loop_seconds": "training time (s)"}
    return {label: training[key] for key, label in names.items() if training.get(key) is not None}


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser(PushArguments, prog="hf-dialret push", description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    from ..hub import push_to_hub, save_model_card
    from ..retrieval.loading import load_retriever

    model_dir = Path(args.model)
    eval_results = args.eval_results
    if eval_results is None and (model_dir / "eval_results.json").is_file():
        eval_results = str(model_dir / "eval_results.json")
    card_kwargs: dict[str, Any] = {
        "eval_results": eval_results,
        "eval_dataset": args.eval_dataset,
        "eval_split": args.eval_split,
        "datasets": args.datasets,
        "training_data": args.training_data,
        "training_details": training_details(model_dir, eval_results),
        "license": args.license,
    }
    try:
        model, processor = load_retriever(args.model, device="cpu")
        if args.output_dir:
            out = Path(args.output_dir)
            model.save_pretrained(out)
            processor.save_pretrained(out)
            save_model_card(model, out, args.repo_id, **card_kwargs)
            print(f"wrote {sorted(p.name for p in out.iterdir())} to {out} (nothing pushed)")
            return 0
        commit = push_to_hub(
            model, args.repo_id, processor=processor, token=args.token, private=args.private or None,
            revision=args.revision, validate_card=not args.no_validate, **card_kwargs,
        )
    except (OSError, ValueError) as error:
        print(f"hf-dialret push: error: {error}", file=sys.stderr)
        return 1
    print(f"pushed {args.model} to {commit.commit_url}")
    return 0
