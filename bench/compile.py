"""``torch.compile`` on the main job's model: how long inductor compiles, and how much faster a step is afterwards.

Usage::

    python bench/compile.py                 # eager, then compiled (dynamic shapes), each in a fresh subprocess
    python bench/compile.py --batches 6 --rounds 3

The model is the CLI's tiny preset (``bench/train.py``'s ``mdr-small``: BERT 2×128, ResNet 16-128 at 128 px), the
batch 128 synthetic dialogues as the main job trains on them, the step the library's own (``train_step`` there:
``DialogueRetrievalTrainer.compute_loss``, backward, clipping, fused AdamW). Batches differ in length, as in training,
so the compiled model is built with ``dynamic=True`` (one graph for every length instead of one per length). Each mode
runs in its own subprocess so that compiled kernels and caches do not leak into the eager timing, and the compiled
one starts from an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR`` in a temporary directory), as on a fresh machine;
``--warm-cache`` keeps the user's cache instead (what a second run on the same machine pays).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from common import load_average, median, pick_device, print_machine
from train import build_mdr, examples, library_trainer, to_device, train_step

BATCH = 128  # the main job's batch size


def run(mode: str, batches: int, rounds: int) -> dict[str, float]:
    from hf_dialret.data import DialogueRetrievalCollator

    torch.manual_seed(0)
    device = pick_device()
    model, processor = build_mdr("small")
    model.to(device).train()
    collator = DialogueRetrievalCollator(processor)
    rows = examples(BATCH * batches)
    data = [collator(rows[i * BATCH : (i + 1) * BATCH]) for i in range(batches)]
    data = [to_device(batch, device) for batch in data]
    trainer, optimizer, max_grad_norm = library_trainer(model)
    if mode == "compiled":
        trainer.model = torch.compile(model, dynamic=True)
    start = time.perf_counter()
    train_step(trainer, optimizer, max_grad_norm, data[0], device, "fp32")
    first_step_s = time.perf_counter() - start
    for batch in data[1:3]:  # warm-up: a compiled model may still specialise on the next shapes
        train_step(trainer, optimizer, max_grad_norm, batch, device, "fp32")
    steps = []
    for _ in range(rounds):
        for batch in data:
            phases = train_step(trainer, optimizer, max_grad_norm, batch, device, "fp32")
            steps.append(sum(wall for wall, _ in phases.values()))
    return {"first_step_s": first_step_s, "step_s": median(steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6, help=f"distinct batches of {BATCH} (lengths differ)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the batches")
    parser.add_argument("--warm-cache", action="store_true", help="reuse inductor's cache instead of an empty one")
    parser.add_argument("--mode", choices=("eager", "compiled"), help=argparse.SUPPRESS)  # the subprocess's side
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode, args.batches, args.rounds)))
        return
    print_machine(pick_device())
    results = {}
    for mode in ("eager", "compiled"):
        command = [sys.executable, __file__, "--mode", mode, "--batches", str(args.batches),
                   "--rounds", str(args.rounds)]
        with tempfile.TemporaryDirectory() as cache_dir:
            env = dict(os.environ) if args.warm_cache else {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        result = results[mode] = json.loads(output.strip().splitlines()[-1])
        print(f"{mode}: first step {result['first_step_s']:.1f} s, then {result['step_s']:.3f} s per step", flush=True)
    speedup = results["eager"]["step_s"] / results["compiled"]["step_s"]
    compile_cost = results["compiled"]["first_step_s"] - results["eager"]["first_step_s"]
    saved_per_step = results["eager"]["step_s"] - results["compiled"]["step_s"]
    break_even = compile_cost / saved_per_step if saved_per_step > 0 else float("inf")
    print(f"compiled step {speedup:.2f}x eager; compiling costs {compile_cost:.0f} s, repaid after "
          f"{break_even:.0f} steps (load average {load_average()})")


if __name__ == "__main__":
    main()
