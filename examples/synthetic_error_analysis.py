"""Where a model trained on the synthetic corpus goes wrong: R@1 by how the request refers to the target, and
what the top-ranked candidate is when it is not the true response (docs/training.md, "Where the errors are").

    make run                                                   # trains runs/mdr-synthetic
    python examples/synthetic_error_analysis.py --model-dir runs/mdr-synthetic

Pass the run's --seed if it was not the default (42); the picture-request share is read from its eval_results.json.
"""

import argparse
import json
import os

from transformers import AutoModel, AutoProcessor

from hf_dialret.data.synthetic import DEFAULT_IMAGE_FRACTION
from hf_dialret.training.synthetic_errors import REFERENCE_KINDS, synthetic_error_analysis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a trained model + processor (hf-dialret train output)")
    parser.add_argument("--seed", type=int, default=42, help="the run's --seed, which seeds its corpus (default 42)")
    parser.add_argument("--num-dialogues", type=int, default=2000, help="test dialogues to rank (default 2000)")
    args = parser.parse_args()

    results_path = os.path.join(args.model_dir, "eval_results.json")
    fraction = DEFAULT_IMAGE_FRACTION
    if os.path.exists(results_path):
        with open(results_path) as file:
            fraction = json.load(file).get("synthetic_image_fraction", fraction)
    model = AutoModel.from_pretrained(args.model_dir).eval()
    processor = AutoProcessor.from_pretrained(args.model_dir)
    report = synthetic_error_analysis(model, processor, seed=args.seed, num_dialogues=args.num_dialogues,
                                      image_fraction=fraction)

    pool = report["pool"]
    print(f"seed {args.seed}, {args.num_dialogues} test dialogues, "
          f"pool {pool['texts']} texts + {pool['images']} pictures")
    print(f"\n{'R@1 by reference':<20}" + "".join(f"{k:>20}" for k in ("all", *REFERENCE_KINDS)))
    for modality, recall in report["recall_at_1"].items():
        counts = report["queries"][modality]
        cells = [f"{recall['all']:.3f} ({sum(counts.values())})"]
        cells += [f"{recall[k]:.3f} ({counts[k]})" if k in recall else "-" for k in REFERENCE_KINDS]
        print(f"{modality + ' queries':<20}" + "".join(f"{c:>20}" for c in cells))
    for modality, categories in report["top1"].items():
        print(f"\ntop-1 of the {modality} queries:")
        for category, count in categories.items():
            print(f"  {count:6d}  {category}")


if __name__ == "__main__":
    main()
