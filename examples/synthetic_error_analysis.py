"""Where a model trained on the synthetic corpus goes wrong: R@1 by how the request refers to the target, and
what the top-ranked candidate is when it is not the true response (docs/training.md, "Where the errors are").

    make run                                                   # trains runs/mdr-synthetic
    python examples/synthetic_error_analysis.py --model-dir runs/mdr-synthetic

The corpus settings of the run (seed, test size, picture-request share) are read from its eval_results.json.
"""

import argparse

from hf_dialret.commands.evaluate import training_run_settings
from hf_dialret.retrieval.loading import load_retriever
from hf_dialret.training.synthetic_errors import REFERENCE_KINDS, synthetic_error_analysis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a trained model + processor (hf-dialret train output)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the corpus seed (default: the run's, from its eval_results.json; else 42)")
    parser.add_argument("--num-dialogues", type=int, default=None,
                        help="test dialogues to rank (default: the run's test size; else 2000)")
    args = parser.parse_args()

    run = training_run_settings(args.model_dir)  # the run's own, else hf-dialret train's defaults
    args.seed = run["seed"] if args.seed is None else args.seed
    args.num_dialogues = run["num_test_dialogues"] if args.num_dialogues is None else args.num_dialogues
    fraction = run["synthetic_image_fraction"]
    model, processor = load_retriever(args.model_dir, device="cpu")
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
