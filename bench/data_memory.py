"""Peak memory of reading a 100k-dialogue MMDialog-format file: streaming vs eager vs a naive json.loads list.

Usage: ``python bench/data_memory.py [--dialogues 100000] [--workdir DIR]``. Each mode runs in a fresh subprocess and
reports its own peak RSS (``ru_maxrss``) and wall time, so the modes do not share allocations. The file follows the
real train schema (JSON Lines, ``__TEXT__``/``__MEDIA__`` elements, 4.56 turns and 2.59 images per dialogue on
average as in MMDialog's statistics); media keys point to a pool of 256 tiny JPEGs so the folder stays small.
Images are not verified at load time (``verify_images=False``): the subject is memory, not image checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("stream", "eager", "naive")


def generate(folder: Path, dialogues: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    keys = [str(rng.getrandbits(64) - 2**63) for _ in range(256)]
    for key in keys:
        Image.new("RGB", (16, 16), tuple(rng.randrange(256) for _ in range(3))).save(folder / f"{key}.jpg")
    words = "the a photo view city sky lovely stunning thanks sunset beach skyline my favourite here is".split()
    path = folder / "conversations.json"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(dialogues):
            turns = []
            for _ in range(rng.choice((3, 4, 4, 5, 5, 6))):  # mean ~4.5 turns
                turn = [{"__TEXT__": " ".join(rng.choice(words) for _ in range(rng.randint(4, 24)))}]
                turn += [{"__MEDIA__": rng.choice(keys)} for _ in range(rng.choice((0, 0, 1, 1, 1, 2)))]
                turns.append({"turn": turn})
            f.write(json.dumps({"conversation_id": i, "conversation": turns}) + "\n")
    return path


def run_mode(mode: str, path: str) -> dict:
    from hf_dialret.data import load_mmdialog

    start = time.perf_counter()
    rows = 0
    if mode == "stream":
        dataset = load_mmdialog(path, "train", streaming=True, verify_images=False).decode(False)
        for _ in dataset:
            rows += 1
    elif mode == "eager":
        dataset = load_mmdialog(path, "train", verify_images=False)
        for batch in dataset.with_format("arrow").iter(batch_size=1000):
            rows += batch.num_rows
    else:  # what a reader without streaming typically does: every record in a Python list
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        rows = len(records)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "rows": rows, "seconds": round(seconds, 1), "peak_rss_mib": round(peak_mib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=100_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # internal: one mode in this process
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.file)))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        start = time.perf_counter()
        path = generate(Path(workdir) / "train", args.dialogues)
        size = os.path.getsize(path) / 2**20
        print(f"generated {args.dialogues} dialogues, {size:.0f} MiB in {time.perf_counter() - start:.0f} s",
              flush=True)
        baseline = json.loads(subprocess.run(
            [sys.executable, "-c", "import resource, hf_dialret.data; "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"],
            check=True, capture_output=True, text=True).stdout)
        print(json.dumps({"mode": "import only", "peak_rss_mib": baseline}), flush=True)
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--file", str(path)], check=True,
                                 capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
