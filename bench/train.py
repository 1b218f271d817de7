"""Training throughput, FLOP/s against the machine's matmul rate, peak memory, and the cached loss at batch 1,024.

Usage::

    python bench/train.py                       # every config below, each in a fresh subprocess
    python bench/train.py --configs mdr-small --rounds 3
    python bench/train.py --cached-only         # only the batch-1,024 memory comparison

Configs (random weights, built in code, nothing downloaded):

- ``mdr-small``: the CLI's tiny preset (BERT 2×128, basic-block ResNet 16-128, 48 px), batch 64;
- ``mdr-base``: BERT-base (12×768) for context and response text + ResNet-50 at 224 px, batch 16;
- ``dialclip-small``: CLIP 2×64, 32 px patch 8, + the DialCLIP adapter, batch 64;
- ``dialclip-base``: CLIP ViT-B/32 (text 12×512, vision 12×768, 224 px) + the DialCLIP adapter, batch 16.

Batches come from the synthetic corpus and are collated *before* timing (the collation cost is reported apart:
it is what a Trainer pays per step with ``dataloader_num_workers=0``). A step is forward + loss + backward + AdamW
step. fp32 and bf16 autocast steps alternate in rounds (ratios from the same rounds); FLOPs are counted on one fp32
step with ``torch.utils.flop_counter.FlopCounterMode`` and compared with the fp32 matmul rate measured in the same
process. Each config runs in its own subprocess so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    PeakMemory,
    load_average,
    markdown_table,
    matmul_flops,
    median,
    peak_rss_mib,
    pick_device,
    precision_context,
    print_machine,
    synchronize,
)
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {
    "mdr-small": dict(batch=64, rounds=3, steps=3),
    "mdr-base": dict(batch=16, rounds=2, steps=2),
    "dialclip-small": dict(batch=64, rounds=3, steps=3),
    "dialclip-base": dict(batch=16, rounds=2, steps=2),
}


# --------------------------------------------------------------------------------------------------- models, data
def build_mdr(size: str):
    import hf_dialret
    from hf_dialret.backbones import build_tiny_tokenizer, tiny_image_processor, tiny_text_config, tiny_vision_config
    from hf_dialret.data import synthetic_vocabulary
    from transformers import ResNetConfig

    tokenizer = build_tiny_tokenizer(synthetic_vocabulary())
    if size == "small":
        text, vision, image_size = tiny_text_config(len(tokenizer)), tiny_vision_config(), 48
    else:  # BERT-base and ResNet-50 shapes (ResNetConfig's defaults are ResNet-50)
        text = tiny_text_config(len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, max_position_embeddings=512)
        vision, image_size = ResNetConfig(), 224
    processor = hf_dialret.DialogueRetrievalProcessor(tiny_image_processor(image_size), tokenizer, max_context_length=128)
    config = hf_dialret.MultimodalDualRetrieverConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), pooling="mean",
        image_token_id=processor.image_token_id,
    )
    return hf_dialret.MultimodalDualRetrieverModel(config), processor


def build_dialclip(size: str):
    from hf_dialret.data import synthetic_vocabulary
    from hf_dialret.modeling.modeling_dialclip import DialCLIPModel
    from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
    from hf_dialret.prompts import DialCLIPPromptConfig
    from hf_dialret.prompts.tiny import tiny_clip_tokenizer
    from peft import get_peft_model
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = tiny_clip_tokenizer(synthetic_vocabulary())
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if size == "small":
        image_size = 32
        config = CLIPConfig(
            text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, **ids),
            vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               image_size=image_size, patch_size=8),
            projection_dim=64,
        )
    else:  # CLIPConfig's defaults are ViT-B/32
        image_size = 224
        config = CLIPConfig(text_config=ids)
    clip = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    processor = DialCLIPProcessor(image_processor, tokenizer)
    model = get_peft_model(DialCLIPModel.from_clip_model(clip), DialCLIPPromptConfig())
    return model, processor


def examples(n: int) -> list[dict[str, Any]]:
    from hf_dialret.data import make_synthetic_corpus

    corpus = make_synthetic_corpus(n, num_validation_dialogues=4, num_test_dialogues=4, image_size=48)
    return list(corpus["train"])


def padding_waste(batch: dict[str, torch.Tensor]) -> float:
    mask = batch["attention_mask"]
    return 1.0 - float(mask.sum()) / mask.numel()


# ------------------------------------------------------------------------------------------------------- steps
def train_step(model, optimizer, batch, device, precision: str) -> float:
    with precision_context(device, precision):
        loss = model(**batch, return_loss=True).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from hf_dialret.data import DialogueRetrievalCollator

    torch.manual_seed(0)
    device = pick_device(args.device)
    family, size = name.split("-")
    settings = CONFIGS[name]
    batch_size = args.batch or settings["batch"]
    rounds, steps = args.rounds or settings["rounds"], args.steps or settings["steps"]
    model, processor = build_mdr(size) if family == "mdr" else build_dialclip(size)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    rows = examples(batch_size * 2)
    collator = DialogueRetrievalCollator(processor)
    start = time.perf_counter()
    batches = [collator(rows[i * batch_size:(i + 1) * batch_size]) for i in range(2)]
    collate_s = (time.perf_counter() - start) / 2
    waste = median(padding_waste(b) for b in batches)
    batches = [to_device(b, device) for b in batches]

    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, batches[0], device, "fp32")
    flops = float(counter.get_total_flops())
    for precision in ("fp32", "bf16"):
        train_step(model, optimizer, batches[1], device, precision)  # warm-up
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for r in range(rounds):
        for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            synchronize(device)
            start = time.perf_counter()
            for s in range(steps):
                train_step(model, optimizer, batches[s % 2], device, precision)
            synchronize(device)
            times[precision].append((time.perf_counter() - start) / steps)
    peak = {"fp32": matmul_flops(device, torch.float32), "bf16": matmul_flops(device, torch.bfloat16)}
    step = {p: median(t) for p, t in times.items()}
    return {
        "config": name, "batch": batch_size, "device": str(device),
        "trainable_params": sum(p.numel() for p in trainable), "params": sum(p.numel() for p in model.parameters()),
        "fp32_step_s": step["fp32"], "bf16_step_s": step["bf16"],
        "bf16_speedup": median(f / b for f, b in zip(times["fp32"], times["bf16"])),
        "gflop_per_step": flops / 1e9, "fp32_matmul_gflops": peak["fp32"] / 1e9, "bf16_matmul_gflops": peak["bf16"] / 1e9,
        "fp32_mfu": flops / step["fp32"] / peak["fp32"], "bf16_mfu": flops / step["bf16"] / peak["bf16"],
        "collate_s": collate_s, "context_padding": waste, "peak_rss_mib": peak_rss_mib(),
        "load": load_average(), "rounds": rounds, "steps": steps,
    }


def run_cached(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One MDR-small step at batch ``--large-batch``: plain backprop or the cached loss (``chunk`` examples)."""
    from hf_dialret.data import DialogueRetrievalCollator
    from hf_dialret.training.cached_loss import cached_training_step

    torch.manual_seed(0)
    device = pick_device(args.device)
    model, processor = build_mdr("small")
    model.to(device).train()
    rows = examples(args.large_batch)
    batch = to_device(DialogueRetrievalCollator(processor)(rows), device)
    # Warm-up on a few examples: one-time kernel selection and allocator growth are not the step's memory.
    model(**to_device(DialogueRetrievalCollator(processor)(rows[:16]), device), return_loss=True).loss.backward()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with PeakMemory(device) as memory:
        if mode == "plain":
            model(**batch, return_loss=True).loss.backward()
        else:
            cached_training_step(model, batch, args.chunk)
    synchronize(device)
    return {"mode": mode, "batch": args.large_batch, "chunk": args.chunk if mode == "cached" else None,
            "step_s": time.perf_counter() - start, "step_peak_mib": memory.peak_mib,
            "peak_rss_mib": memory.peak_rss_mib if device.type == "cpu" else peak_rss_mib(), "device": str(device),
            "load": load_average()}


# -------------------------------------------------------------------------------------------------------- driver
def in_subprocess(flag: str, value: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__)), flag, value, "--large-batch", str(args.large_batch),
           "--chunk", str(args.chunk)]
    for option in ("device", "batch", "rounds", "steps"):
        if getattr(args, option):
            cmd += [f"--{option}", str(getattr(args, option))]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout  # stderr: shown
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=None, help="override every config's batch size")
    parser.add_argument("--rounds", type=int, default=None, help="fp32/bf16 rounds (medians over rounds)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--large-batch", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=64, help="cached loss: examples per forward pass")
    parser.add_argument("--repeats", type=int, default=1, help="cached-loss memory runs per mode")
    parser.add_argument("--cached-only", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one config in this process
    parser.add_argument("--cached", help=argparse.SUPPRESS)  # internal: one cached-loss mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_config(args.one, args)))
        return
    if args.cached:
        print(json.dumps(run_cached(args.cached, args)))
        return
    print_machine(pick_device(args.device))
    if not args.cached_only:
        results = []
        for name in args.configs:
            results.append(in_subprocess("--one", name, args))
            print(f"# {json.dumps(results[-1])}", flush=True)
        rows = [[r["config"], r["batch"], f"{r['params'] / 1e6:.1f}M / {r['trainable_params'] / 1e6:.2f}M",
                 f"{r['batch'] / r['fp32_step_s']:.1f}", f"{r['batch'] / r['bf16_step_s']:.1f}",
                 f"{r['bf16_speedup']:.2f}×", f"{r['gflop_per_step']:.0f}",
                 f"{100 * r['fp32_mfu']:.0f} % of {r['fp32_matmul_gflops']:.0f}",
                 f"{100 * r['bf16_mfu']:.0f} % of {r['bf16_matmul_gflops']:.0f}",
                 f"{1000 * r['collate_s']:.0f} ms ({100 * r['collate_s'] / r['fp32_step_s']:.0f} %)",
                 f"{100 * r['context_padding']:.0f} %", f"{r['peak_rss_mib']:,.0f}", r["load"]] for r in results]
        print(markdown_table(["config", "batch", "params / trainable", "ex/s fp32", "ex/s bf16", "bf16 speed-up",
                              "GFLOP/step", "fp32 FLOP/s of matmul GFLOP/s", "bf16 FLOP/s of matmul GFLOP/s",
                              "collate/batch (of fp32 step)", "context padding", "peak RSS MiB", "load"], rows))
    if not args.repeats:  # --repeats 0: no cached-loss comparison
        return
    cached = [in_subprocess("--cached", mode, args) for _ in range(args.repeats) for mode in ("plain", "cached")]
    for r in cached:
        print(f"# {json.dumps(r)}")
    rows = []
    for mode in ("plain", "cached"):
        runs = [r for r in cached if r["mode"] == mode]
        rows.append([mode if mode == "plain" else f"cached, chunk {args.chunk}", args.large_batch,
                     f"{median(r['step_peak_mib'] for r in runs):,.0f}", f"{median(r['peak_rss_mib'] for r in runs):,.0f}",
                     f"{median(r['step_s'] for r in runs):.1f}", runs[0]["load"]])
    print(markdown_table(["MDR-small step", "batch", "step peak over start MiB", "process peak RSS MiB",
                          "step s (fwd+bwd)", "load"], rows))


if __name__ == "__main__":
    main()
