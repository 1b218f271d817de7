"""Reproduce the paper's comparison on the synthetic corpus: DR vs SDR vs MDR, oracle vs predicted intent.

    python examples/compare_architectures.py --output-dir runs/compare            # 3 x 5 min on 2 CPU cores
    python examples/compare_architectures.py --output-dir runs/compare --seconds 60 --num-train-dialogues 5000

Each architecture is trained exactly as ``hf-dialret train`` does by default (tiny from-scratch backbones, same
corpus, same time budget, same seed), then evaluated on the same test pool. Prints ONE markdown table and writes it,
with every number, to ``<output-dir>/comparison.md`` / ``comparison.json``.

Columns: "oracle intent" ranks each query only against candidates of its true response modality (DR/SDR's upper
bound); "deployed" is what each architecture does at inference: DR/SDR search the modality predicted by their intent
head (a wrong intent is a miss), MDR ranks one joint pool of texts and images. Intent accuracy is the intent head's
(DR, SDR) or the modality of MDR's top-ranked candidate.
"""

from __future__ import annotations

import argparse
import json
import os

from hf_dialret.commands.train import parse, run


def row(architecture: str, results: dict) -> dict:
    trained = results["trained"]
    return {
        "architecture": architecture.upper(),
        "parameters": results["parameters"]["total"],
        "intent_accuracy": trained["intent"]["accuracy"],
        **{f"oracle_{g}": trained["multimodal_oracle_intent"][g]["recall@1"] for g in ("overall", "text", "image")},
        **{f"deployed_{g}": trained["multimodal"][g]["recall@1"] for g in ("overall", "text", "image")},
        "deployed_r10": trained["multimodal"]["overall"]["recall@10"],
        "untrained_deployed": results["untrained"]["multimodal"]["overall"]["recall@1"],
        "steps": results["training"]["steps"],
        "seconds": results["training"]["seconds"],
    }


def markdown(rows: list[dict], pool: dict) -> str:
    head = ("| architecture | parameters | intent acc. | oracle intent R@1 all / text / image | deployed R@1 all / text / "
            "image | deployed R@10 | untrained R@1 | steps (s) |\n|---|---:|---:|---|---|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['architecture']} | {r['parameters'] / 1e6:.2f}M | {r['intent_accuracy']:.3f} | "
            f"{r['oracle_overall']:.3f} / {r['oracle_text']:.3f} / {r['oracle_image']:.3f} | "
            f"{r['deployed_overall']:.3f} / {r['deployed_text']:.3f} / {r['deployed_image']:.3f} | "
            f"{r['deployed_r10']:.3f} | {r['untrained_deployed']:.4f} | {r['steps']} ({r['seconds']:.0f}) |"
        )
    lines.append(f"\nTest pool: {pool['num_candidates']} candidates ({pool['num_text']} texts, {pool['num_image']} "
                 f"images), {pool['num_queries']} queries; deployed = DR/SDR predicted intent, MDR joint pool.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--architectures", nargs="+", default=["dr", "sdr", "mdr"], choices=["dr", "sdr", "mdr"])
    p.add_argument("--seconds", type=float, default=300, help="training budget per architecture")
    p.add_argument("--num-train-dialogues", type=int, default=20000)
    p.add_argument("--num-test-dialogues", type=int, default=2000)
    args = p.parse_args()
    rows, pool = [], None
    for architecture in args.architectures:
        output = os.path.join(args.output_dir, architecture)
        results = run(*parse([
            "--architecture", architecture, "--output-dir", output, "--max_train_seconds", str(args.seconds),
            "--num_train_dialogues", str(args.num_train_dialogues),
            "--num_test_dialogues", str(args.num_test_dialogues), "--disable_tqdm", "true",
        ]))
        rows.append(row(architecture, results))
        pool = results["trained"]["pool"]
    table = markdown(rows, pool)
    print("\n" + table)
    with open(os.path.join(args.output_dir, "comparison.md"), "w") as handle:
        handle.write(table + "\n")
    with open(os.path.join(args.output_dir, "comparison.json"), "w") as handle:
        json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
