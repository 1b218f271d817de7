"""Serve a trained retriever: index a pool of text and picture candidates, then answer dialogues from it.

    make run                                                          # trains runs/mdr-synthetic
    python examples/serve.py --model-dir runs/mdr-synthetic --index-dir runs/mdr-index
    python examples/serve.py --model-dir runs/mdr-synthetic --index-dir runs/mdr-index \\
        --turn "i painted a mug with two red stars on a sand background." --turn "can you show me the mug?"

Without --candidates the pool is the synthetic test split's responses (texts, and pictures written next to the index
as PNG files). The index is built once and saved; later runs load it (a model/index mismatch is refused). The
`dialogue-response-retrieval` pipeline is the same search behind a `transformers.pipeline`. The main job's tiny
model answers about half of such questions right (README, "Below the target"): expect the other thing's reply too.
"""

import argparse
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a trained retriever (or DialCLIP adapter) + processor")
    parser.add_argument("--index-dir", required=True, help="where the index is saved / loaded from")
    parser.add_argument("--candidates", nargs="*", default=None,
                        help="text files (one reply per line) and/or picture folders; default: the synthetic test pool")
    parser.add_argument("--turn", action="append", default=None, help="a dialogue turn (repeat, oldest first)")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    from transformers import pipeline

    from hf_dialret.retrieval import ResponseIndex
    from hf_dialret.retrieval.loading import load_retriever

    model, processor = load_retriever(args.model_dir, device="auto")
    if os.path.isdir(args.index_dir):
        index = ResponseIndex.load(args.index_dir, model, processor)
    else:
        index = ResponseIndex.build(model, processor, _candidates(args.candidates, args.index_dir + "-pictures"))
        index.save(args.index_dir)
    print(f"index: {len(index)} candidates in {args.index_dir}")

    dialogue = args.turn or ["my kite shows two blue stars against a snow background.",
                             "also, the mug has one red circle on a sand background.",
                             "what background did you choose for the kite?"]
    retriever = pipeline("dialogue-response-retrieval", model=model, processor=processor, index=index)
    print("\n".join(f"  {turn}" for turn in dialogue))
    for hit in retriever(dialogue, top_k=args.top_k):
        print(f"  -> {hit['score']:+.3f} {hit['modality']}: {hit[hit['modality']]}")


def _candidates(paths, picture_dir):
    """Candidates from text files and picture folders, or the synthetic test split's deduplicated responses (their
    pictures written to ``picture_dir`` as PNG files named by their attributes, so that hits show what they are)."""
    if not paths:
        from hf_dialret.data import make_synthetic_corpus

        test = make_synthetic_corpus(num_dialogues=0, num_test_dialogues=2000, seed=42)["test"]
        unique = {response["id"]: response for response in test["response"]}
        candidates = []
        for key, response in unique.items():
            if response["modality"] == "text":
                candidates.append(response["text"])
            else:
                path = Path(picture_dir, key.replace("/", "_") + ".png")
                path.parent.mkdir(parents=True, exist_ok=True)
                response["image"].save(path)
                candidates.append(path)
        return candidates
    candidates = []
    for path in paths:
        if os.path.isdir(path):
            candidates += [Path(path, name) for name in sorted(os.listdir(path))
                           if name.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))]
        else:
            with open(path, encoding="utf-8") as handle:
                candidates += [line.strip() for line in handle if line.strip()]
    return candidates


if __name__ == "__main__":
    main()
