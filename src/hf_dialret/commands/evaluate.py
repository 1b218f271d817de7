"""``hf-dialret evaluate``: every retrieval protocol for a saved retriever (``hf-dialret train`` output or any
``save_pretrained`` directory with its processor)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser

from ..data.synthetic import DEFAULT_IMAGE_FRACTION
from ..training.recipes import DATASETS
from .train import HelpFormatter, check_synthetic_image_fraction, example_retrievals, fail, recall_table

DESCRIPTION = "Evaluate a saved dialogue retriever on every protocol (oracle text/image retrieval, intent, multimodal)."
EPILOG = """\
examples:
  hf-dialret evaluate --model-dir runs/mdr-synthetic
  hf-dialret evaluate --model-dir runs/photochat --dataset photochat --data-dir data/photochat \\
      --image-dir data/photochat/images
"""


@dataclass
class EvaluateArguments:
    model_dir: str = field(metadata={"help": "Directory of the saved model and processor (AutoModel / AutoProcessor)."})
    dataset: str = field(default="synthetic", metadata={"help": "Evaluation data.", "choices": list(DATASETS)})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the PhotoChat / MMDialog files."})
    image_dir: str | None = field(default=None, metadata={"help": "Folder of the photos."})
    eval_split: str = field(default="test", metadata={"help": "Split to evaluate.", "choices": ["validation", "test"]})
    num_test_dialogues: int | None = field(default=None, metadata={
        "help": "Synthetic corpus: test dialogues (default: the training run's, from <model-dir>/eval_results.json; "
                "else 2000)."})
    seed: int | None = field(default=None, metadata={
        "help": "Synthetic corpus seed (default: the training run's --seed, from <model-dir>/eval_results.json; "
                "else 42)."})
    synthetic_image_fraction: float | None = field(
        default=None,
        metadata={"help": "Synthetic corpus: share of picture requests (default: the training run's "
                  f"--synthetic-image-fraction, from <model-dir>/eval_results.json; else {DEFAULT_IMAGE_FRACTION})."},
    )
    max_eval_examples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    batch_size: int = field(default=128, metadata={"help": "Encoding batch size."})
    output_file: str | None = field(default=None, metadata={"help": "Where to write the JSON report (default: "
                                    "<model-dir>/eval_results_<dataset>_<split>.json)."})


def parse(argv: list[str]) -> EvaluateArguments:
    parser = HfArgumentParser(EvaluateArguments, prog="hf-dialret evaluate", description=DESCRIPTION, epilog=EPILOG)
    parser.formatter_class = HelpFormatter
    (args,) = parser.parse_args_into_dataclasses(argv)
    for name, value in training_run_settings(args.model_dir).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    check_synthetic_image_fraction(parser, args.synthetic_image_fraction)
    return args


#: The synthetic test pool's settings when a run did not record them (hf-dialret train's defaults).
RUN_SETTING_DEFAULTS = {"seed": 42, "num_test_dialogues": 2000, "synthetic_image_fraction": DEFAULT_IMAGE_FRACTION}


def training_run_settings(model_dir: str) -> dict[str, Any]:
    """The synthetic corpus settings (seed, test size, picture share) a training run recorded in
    ``<model_dir>/eval_results.json``, each falling back to ``RUN_SETTING_DEFAULTS``."""
    try:
        with open(os.path.join(model_dir, "eval_results.json"), encoding="utf-8") as handle:
            results = json.load(handle)
    except (OSError, ValueError):
        results = {}
    recorded = results if isinstance(results, dict) else {}
    return {key: recorded[key] if isinstance(recorded.get(key), (int, float)) and not isinstance(recorded[key], bool)
            else default for key, default in RUN_SETTING_DEFAULTS.items()}


def run(args: EvaluateArguments) -> dict[str, Any]:
    """Load, evaluate, print and write the report; returns it."""
    from ..retrieval.loading import load_retriever
    from ..data import DialogueRetrievalCollator
    from ..training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments
    from ..training.recipes import load_retrieval_dataset

    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"model dir {args.model_dir!r} does not exist (pass the --output-dir of a training run)")
    try:
        model, processor = load_retriever(args.model_dir, device="cpu")  # DialCLIP adapters: their base CLIP first
    except (OSError, ValueError, TypeError) as error:
        raise FileNotFoundError(f"cannot load a retriever and its processor from {args.model_dir!r}: {error}") from error
    data = load_retrieval_dataset(args.dataset, args.data_dir, args.image_dir, splits=(args.eval_split,),
                                  num_train_dialogues=0, num_test_dialogues=args.num_test_dialogues, seed=args.seed,
                                  image_fraction=args.synthetic_image_fraction)
    dataset = data[args.eval_split]
    if args.max_eval_examples:
        dataset = dataset.select(range(min(args.max_eval_examples, len(dataset))))
    with tempfile.TemporaryDirectory() as scratch:
        training_args = DialogueRetrievalTrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size,
                                                           report_to="none")
        trainer = DialogueRetrievalTrainer(model=model, args=training_args, processing_class=processor,
                                           data_collator=DialogueRetrievalCollator(processor))
        report = trainer.retrieval_report(dataset)
    results = {"model_dir": args.model_dir, "dataset": args.dataset, "eval_split": args.eval_split, "trained": report}
    if args.dataset == "synthetic":
        results["synthetic_image_fraction"] = args.synthetic_image_fraction
    output = args.output_file or os.path.join(args.model_dir, f"eval_results_{args.dataset}_{args.eval_split}.json")
    with open(output, "w") as handle:
        json.dump(results, handle, indent=2)
    print(recall_table(report))
    print(example_retrievals(trainer, dataset))
    print(f"\nwrote {output}")
    return results


def main(argv: list[str]) -> int:
    args = parse(argv)
    from ..data import DataFormatError
    from ..training.recipes import RecipeError

    try:
        run(args)
    except (FileNotFoundError, NotADirectoryError, RecipeError, DataFormatError) as error:
        return fail(str(error))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
