"""Training throughput, FLOP/s against the machine's matmul rate, peak memory, and the cached loss at batch 1,024.

Usage::

    python bench/train.py                       # every config below, each in a fresh subprocess
    python bench/train.py --configs mdr-small --rounds 3
    python bench/train.py --cached-only         # only the batch-1,024 memory comparison

Configs (random weights, built in code, nothing downloaded):

- ``mdr-small``: the CLI's tiny preset (BERT 2×128, basic-block ResNet 16-128, 128 px), batch 64;
- ``mdr-base``: BERT-base (12×768) for context and response text + ResNet-50 at 224 px, batch 16;
- ``dialclip-small``: CLIP 2×64, 32 px patch 8, + the DialCLIP adapter, batch 64;
- ``dialclip-base``: CLIP ViT-B/32 (text 12×512, vision 12×768, 224 px) + the DialCLIP adapter, batch 16.

Batches come from the synthetic corpus and are collated *before* timing (the collation cost is reported apart:
it is what a Trainer pays per step with ``dataloader_num_workers=0``). A step is the library's own
(:func:`train_step`): ``DialogueRetrievalTrainer.compute_loss`` under autocast, backward, gradient clipping at the
default ``max_grad_norm`` and the optimizer that ``DialogueRetrievalTrainer.create_optimizer()`` builds from the default
``DialogueRetrievalTrainingArguments`` (fused AdamW, no decay on biases and norms). fp32 and bf16 autocast steps
alternate in rounds (ratios per step pair of the same round); FLOPs are counted on one fp32 step with
``torch.utils.flop_counter.FlopCounterMode`` and compared with the matmul rate measured in the same process, both by
wall time and by process CPU time (which does not count the time spent waiting for a core on a shared machine; see
``common.timed_both``). The fused AdamW step is also timed against a per-parameter AdamW step on the same gradients
(``--no-compare-optimizer`` skips it). Padding is reported for random batches and for the length-grouped batches of
``train_sampling_strategy="group_by_length"``. Each config runs in its own subprocess so that its peak RSS is its
own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
    timed_both,
)
from torch.utils.flop_counter import FlopCounterMode

from hf_dialret.inference import resolve_precision
from hf_dialret.training.attention import eager_attention

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
    from hf_dialret.training.recipes import TINY_IMAGE_SIZE
    from transformers import ResNetConfig

    tokenizer = build_tiny_tokenizer(synthetic_vocabulary())
    if size == "small":
        text, vision, image_size = tiny_text_config(len(tokenizer)), tiny_vision_config(), TINY_IMAGE_SIZE
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


def grouped_padding(processor: Any, collator: Any, rows: list[dict[str, Any]], batch_size: int) -> tuple[float, float]:
    """Padding share of the query-side tokens (``attention_mask``: MDR's flattened context, DialCLIP's current turn)
    over batches in random order and batches of ``TrainingArguments(train_sampling_strategy="group_by_length")``.

    The grouped order is transformers' own ``get_length_grouped_indices`` (what its ``LengthGroupedSampler`` yields,
    with its default mega-batch size for a dataset of ``len(rows)`` examples; real training sets are larger, so
    their mega-batches group better than this).
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths: list[int] = []
    for start in range(0, len(rows), 256):  # chunks: the processor also decodes the context images
        dialogues = [collator._turns(row) for row in rows[start : start + 256]]
        lengths += processor(dialogues=dialogues)["attention_mask"].sum(1).tolist()
    generator = torch.Generator().manual_seed(0)

    def waste(order: list[int]) -> float:
        batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        real = sum(lengths[i] for batch in batches for i in batch)
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        return 1.0 - real / padded

    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    return waste(shuffled), waste(get_length_grouped_indices(lengths, batch_size, generator=generator))


# ------------------------------------------------------------------------------------------------------- steps
def library_trainer(model: torch.nn.Module) -> tuple[Any, torch.optim.Optimizer, float]:
    """The trainer, optimizer and gradient-clipping norm of a default ``hf-dialret`` training run.

    ``DialogueRetrievalTrainer.create_optimizer()`` under the default ``DialogueRetrievalTrainingArguments``: fused
    AdamW (``optim="adamw_torch_fused"``) with no weight decay on biases and norms, and ``max_grad_norm`` (1.0), so
    that the step timed here is the one the library takes, not a hand-made approximation of it.
    """
    from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments

    with tempfile.TemporaryDirectory() as output_dir:  # nothing is written: no train() call, no checkpoint
        args = DialogueRetrievalTrainingArguments(output_dir=output_dir, report_to="none", learning_rate=1e-5)
        trainer = DialogueRetrievalTrainer(model=model, args=args)
        return trainer, trainer.create_optimizer(), float(args.max_grad_norm)


def _clock(device: torch.device) -> tuple[float, float]:
    synchronize(device)
    return time.perf_counter(), time.process_time()


PHASES = ("forward", "backward", "optimizer")


def train_step(
    trainer: Any, optimizer: torch.optim.Optimizer, max_grad_norm: float, batch: dict[str, Any],
    device: torch.device, precision: str,
) -> dict[str, tuple[float, float]]:
    """One training step as ``DialogueRetrievalTrainer`` takes it: its ``compute_loss`` (forward + contrastive loss)
    under autocast, backward, gradient clipping, optimizer step. Returns (wall, CPU) seconds per phase."""
    model = trainer.model
    marks = [_clock(device)]
    # As DialogueRetrievalTrainer.train does: eager attention for bf16 on the CPU (hf_dialret.training.attention).
    cpu_bf16 = device.type == "cpu" and resolve_precision(precision, device) == "bf16"
    with precision_context(device, precision), eager_attention(model, enabled=cpu_bf16):
        loss = trainer.compute_loss(model, batch)
    marks.append(_clock(device))
    loss.backward()
    marks.append(_clock(device))
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    marks.append(_clock(device))
    return {phase: (b[0] - a[0], b[1] - a[1]) for phase, a, b in zip(PHASES, marks, marks[1:])}


def compare_optimizers(
    trainer: Any, fused: torch.optim.Optimizer, batch: dict[str, Any], device: torch.device, rounds: int
) -> dict[str, float]:
    """Median (wall, CPU) seconds of one ``optimizer.step()``: the library's fused AdamW against a per-parameter
    ``torch.optim.AdamW`` (what transformers' ``"adamw_torch"`` runs on a CPU, the default before torch 2.8, and what
    this bench timed before), alternating on the same gradients."""
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    loop = torch.optim.AdamW(trainable, lr=1e-5, foreach=False)
    trainer.compute_loss(trainer.model, batch).backward()  # gradients kept for every step below
    loop.step()  # warm-up: allocates its state
    times: dict[str, list[tuple[float, float]]] = {"fused": [], "loop": []}
    for r in range(rounds):
        for name in (("fused", "loop") if r % 2 == 0 else ("loop", "fused")):
            times[name].append(timed_both((fused if name == "fused" else loop).step, device))
    trainer.model.zero_grad(set_to_none=True)
    return {f"{name}_{clock}_s": median(t[i] for t in runs)
            for name, runs in times.items() for i, clock in enumerate(("wall", "cpu"))}


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
    if args.channels_last:  # what-if, not what the library does: convolutions in NHWC (see --channels-last)
        model.to(memory_format=torch.channels_last)
    trainer, optimizer, max_grad_norm = library_trainer(model)
    rows = examples(batch_size * args.padding_batches)
    collator = DialogueRetrievalCollator(processor)
    start = time.perf_counter()
    batches = [collator(rows[i * batch_size:(i + 1) * batch_size]) for i in range(2)]
    collate_s = (time.perf_counter() - start) / 2
    waste = median(padding_waste(b) for b in batches)
    random_waste, grouped_waste = grouped_padding(processor, collator, rows, batch_size)
    batches = [to_device(b, device) for b in batches]
    if args.channels_last:
        batches = [{k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
                    for k, v in b.items()} for b in batches]

    with FlopCounterMode(display=False) as counter:
        train_step(trainer, optimizer, max_grad_norm, batches[0], device, "fp32")
    flops = float(counter.get_total_flops())
    for precision in ("fp32", "bf16"):
        train_step(trainer, optimizer, max_grad_norm, batches[1], device, precision)  # warm-up
    times: dict[str, list[dict[str, tuple[float, float]]]] = {"fp32": [], "bf16": []}
    for r in range(rounds):
        for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            for s in range(steps):
                times[precision].append(train_step(trainer, optimizer, max_grad_norm, batches[s % 2], device,
                                                   precision))
    peak_rss = peak_rss_mib()  # before the optimizer comparison, which adds a second optimizer state
    optimizers = compare_optimizers(trainer, optimizer, batches[0], device, rounds) if args.compare_optimizer else {}
    cpu_clock = device.type == "cpu"
    peak = {p: matmul_flops(device, dtype) for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    peak_cpu = {p: matmul_flops(device, dtype, cpu_time=True) if cpu_clock else float("nan")
                for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}

    def total(step: dict[str, tuple[float, float]], clock: int) -> float:
        return sum(phase[clock] for phase in step.values())

    wall = {p: [total(t, 0) for t in runs] for p, runs in times.items()}
    cpu = {p: [total(t, 1) for t in runs] for p, runs in times.items()}
    step = {p: median(t) for p, t in wall.items()}
    step_cpu = {p: median(t) for p, t in cpu.items()}
    return {
        "config": name, "batch": batch_size, "device": str(device), "threads": torch.get_num_threads(),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params": sum(p.numel() for p in model.parameters()),
        "optimizer": f"{type(optimizer).__name__}(fused={optimizer.defaults.get('fused')})",
        "max_grad_norm": max_grad_norm,
        "fp32_step_s": step["fp32"], "bf16_step_s": step["bf16"],
        "fp32_step_cpu_s": step_cpu["fp32"], "bf16_step_cpu_s": step_cpu["bf16"],
        "fp32_phases_s": {ph: median(t[ph][0] for t in times["fp32"]) for ph in PHASES},
        "bf16_phases_s": {ph: median(t[ph][0] for t in times["bf16"]) for ph in PHASES},
        # Same rounds (interleaved), so the load hits both precisions alike.
        "bf16_speedup": median(f / b for f, b in zip(wall["fp32"], wall["bf16"])),
        "bf16_speedup_cpu": median(f / b for f, b in zip(cpu["fp32"], cpu["bf16"])),
        "gflop_per_step": flops / 1e9,
        "fp32_matmul_gflops": peak["fp32"] / 1e9, "bf16_matmul_gflops": peak["bf16"] / 1e9,
        "fp32_mfu": flops / step["fp32"] / peak["fp32"], "bf16_mfu": flops / step["bf16"] / peak["bf16"],
        "fp32_mfu_cpu": flops / step_cpu["fp32"] / peak_cpu["fp32"],
        "bf16_mfu_cpu": flops / step_cpu["bf16"] / peak_cpu["bf16"],
        **{f"adamw_{key}": value for key, value in optimizers.items()},
        "collate_s": collate_s, "context_padding": waste, "padding_random": random_waste,
        "padding_grouped": grouped_waste, "peak_rss_mib": peak_rss,
        "load": load_average(), "rounds": rounds, "steps": steps, "channels_last": args.channels_last,
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
    for option in ("device", "batch", "rounds", "steps", "threads", "padding_batches"):
        if getattr(args, option):
            cmd += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if not args.compare_optimizer:
        cmd.append("--no-compare-optimizer")
    if args.channels_last:
        cmd.append("--channels-last")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout  # stderr: shown
    return json.loads(out.strip().splitlines()[-1])


def percent(fraction: float) -> str:
    # CPU-time figures are not defined on a GPU (its kernels do not run on the process's CPU time): "–" there.
    return "–" if fraction != fraction else f"{100 * fraction:.0f} %"


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
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--padding-batches", type=int, default=32,
                        help="batches of examples over which random vs length-grouped padding is measured")
    parser.add_argument("--no-compare-optimizer", dest="compare_optimizer", action="store_false",
                        help="skip timing the fused AdamW step against a per-parameter AdamW step")
    parser.add_argument("--channels-last", action="store_true",
                        help="what-if (not the library's default): convolution weights and images in channels-last "
                             "(NHWC) memory format, which oneDNN runs without reordering every call")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one config in this process
    parser.add_argument("--cached", help=argparse.SUPPRESS)  # internal: one cached-loss mode
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        rows = [[r["config"] + (" (channels-last)" if r.get("channels_last") else ""), r["batch"],
                 f"{r['params'] / 1e6:.1f}M / {r['trainable_params'] / 1e6:.2f}M",
                 f"{r['batch'] / r['fp32_step_s']:.2f}", f"{r['batch'] / r['bf16_step_s']:.2f}",
                 f"{r['bf16_speedup']:.2f}× / {r['bf16_speedup_cpu']:.2f}×", f"{r['gflop_per_step']:.0f}",
                 f"{percent(r['fp32_mfu'])} / {percent(r['fp32_mfu_cpu'])}",
                 f"{percent(r['bf16_mfu'])} / {percent(r['bf16_mfu_cpu'])}",
                 " / ".join(f"{r['fp32_phases_s'][ph]:.2f}" for ph in PHASES),
                 (f"{r['adamw_fused_cpu_s']:.3f} vs {r['adamw_loop_cpu_s']:.3f}" if "adamw_fused_cpu_s" in r
                  else "–"),
                 f"{1000 * r['collate_s']:.0f} ms ({100 * r['collate_s'] / r['fp32_step_s']:.0f} %)",
                 f"{100 * r['padding_random']:.0f} % → {100 * r['padding_grouped']:.0f} %",
                 f"{r['peak_rss_mib']:,.0f}", r["load"]] for r in results]
        print(f"# matmul GFLOP/s (wall): " + ", ".join(
            f"{r['config']} fp32 {r['fp32_matmul_gflops']:.0f} bf16 {r['bf16_matmul_gflops']:.0f}" for r in results))
        print(markdown_table(["config", "batch", "params / trainable", "ex/s fp32", "ex/s bf16",
                              "bf16 speed-up (wall / CPU time)", "GFLOP/step",
                              "fp32 of matmul rate (wall / CPU time)", "bf16 of matmul rate (wall / CPU time)",
                              "fp32 step: fwd+loss / bwd / clip+AdamW s", "AdamW step CPU s: fused vs per-parameter",
                              "collate/batch (of fp32 step)", "query padding: random → group_by_length",
                              "peak RSS MiB", "load"], rows))
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
