"""Encoding throughput: hf_dialret's fast path (fp32, bf16) against sentence-transformers on the same BERT weights.

Usage: ``python bench/encode.py [--contexts 256] [--responses 512] [--runs 5] [--batch-size 64] [--layers 4 --hidden 512 ...]``

One random BERT (BERT-small shape by default: 4 layers, hidden 512, so matmuls dominate) is saved locally with the
synthetic corpus's tokenizer and loaded twice: as the text towers of an MDR model (``from_backbones``, mean pooling)
and as a ``SentenceTransformer`` (Transformer -> mean Pooling -> Normalize). Both encode the same test dialogues of
the synthetic corpus (for sentence-transformers flattened to ``"A: ... [SEP] B: ..."``, which tokenises to the very
same ids as the processor's output; checked) and the same text responses, with the same batch size and threads, in
alternating order in one process. Reported: medians of ``--runs`` timings, ratios to sentence-transformers from the
same runs (by wall time and by process CPU time, which leaves out waiting for a core on a shared machine), FLOP/s as a
fraction of the matmul rate measured in the same run, and a ranking check of bf16 against fp32.
Runs unchanged on a CUDA GPU (picked automatically, or ``--device``).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import (
    load_average,
    markdown_table,
    matmul_flops,
    median,
    pick_device,
    precision_context,
    print_machine,
    timed_both,
)
from torch.utils.flop_counter import FlopCounterMode

from hf_dialret import DialogueRetrievalProcessor, MultimodalDualRetrieverModel
from hf_dialret.backbones import save_tiny_backbones
from hf_dialret.data import DialogueRetrievalCollator, make_synthetic_corpus, synthetic_vocabulary
from hf_dialret.inference import encode_contexts, encode_responses, resolve_precision


def build(args: argparse.Namespace, workdir: str, device: torch.device):
    text_dir, vision_dir = save_tiny_backbones(
        workdir, synthetic_vocabulary(), text_overrides=dict(
            hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
            intermediate_size=args.intermediate, max_position_embeddings=512,
        ),
    )
    model = MultimodalDualRetrieverModel.from_backbones(text_dir, vision_dir, pooling="mean", projection_dim=256)
    # Untrained, but not meaningless: with one projection on both sides, context and reply are compared through the
    # same random BERT, so replies sharing the context's words rank higher and the ranking check has some signal.
    model.query_projection.weight.data.copy_(model.response_text_projection.weight.data)
    model.to(device).eval()
    processor = DialogueRetrievalProcessor.from_backbones(text_dir, vision_dir, max_context_length=128,
                                                          max_response_length=32)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(text_dir, max_seq_length=128)
    st = SentenceTransformer(modules=[transformer, Pooling(args.hidden, "mean"), Normalize()], device=str(device))
    st.eval()
    return model, processor, st


def corpus_inputs(args: argparse.Namespace, processor: DialogueRetrievalProcessor):
    """The first ``--contexts`` test dialogues (and their responses, for the ranking check), and the text responses
    of as many test dialogues as it takes to have ``--responses`` of them (about half the responses are images)."""
    needed = max(args.contexts, 2 * args.responses + 64)
    corpus = make_synthetic_corpus(8, num_validation_dialogues=4, num_test_dialogues=needed, image_size=48)
    test = corpus["test"]
    collator = DialogueRetrievalCollator(processor)
    everything = [collator._response(row) for row in test]
    texts = [r["text"] for r, _ in everything if r["modality"] == "text"][: args.responses]
    test = test.select(range(args.contexts))
    dialogues = [collator._turns(row) for row in test]
    responses = everything[: args.contexts]
    flat = [" [SEP] ".join(f"{t['speaker']}: {t['text']}" for t in d) for d in dialogues]
    return test, dialogues, flat, responses, texts


def check_same_inputs(model, processor, st, dialogues, flat) -> float:
    """Same token ids on both sides, and ST's embedding = our pooled BERT output (min cosine over a few rows)."""
    ours = processor(dialogues=dialogues[:16])
    theirs = st.preprocess(flat[:16]) if hasattr(st, "preprocess") else st.tokenize(flat[:16])
    assert torch.equal(ours["input_ids"], theirs["input_ids"].cpu()), "the two sides do not get the same token ids"
    device = next(model.parameters()).device
    with torch.inference_mode():
        pooled = model.context.text(ours["input_ids"].to(device), ours["attention_mask"].to(device))
        st_emb = st.encode(flat[:16], convert_to_tensor=True, batch_size=16)
    return float((F.normalize(pooled.float(), dim=-1) * st_emb.float()).sum(-1).min())


def ranking_check(model, processor, test, dialogues, responses, batch_size: int) -> list[list[str]]:
    """Recall@k on the deduplicated test pool (fp32 vs bf16) and bf16's recall of fp32's top-1."""
    pool, index, ids = [], {}, []
    for response, rid in responses:
        if rid not in index:
            index[rid] = len(pool)
            pool.append(response)
        ids.append(index[rid])
    positives = torch.tensor(ids)
    modality = torch.tensor([int(r["modality"] == "image") for r in pool])
    scores = {}
    for precision in ("fp32", "bf16"):
        queries = encode_contexts(model, processor, dialogues, batch_size, precision).cpu()
        cands = encode_responses(model, processor, pool, batch_size, precision).cpu()
        scores[precision] = torch.where(modality.bool(), queries[:, 1] @ cands.T, queries[:, 0] @ cands.T)
    rows = []
    for k in (1, 5, 10):
        def recall(s: torch.Tensor, target: torch.Tensor) -> float:
            top = s.topk(k, dim=1).indices
            return 100.0 * float((top == target[:, None]).any(1).float().mean())

        fp32, bf16 = recall(scores["fp32"], positives), recall(scores["bf16"], positives)
        agree = recall(scores["bf16"], scores["fp32"].argmax(1))
        rows.append([f"R@{k}", f"{fp32:.1f}", f"{bf16:.1f}", f"{bf16 - fp32:+.1f}", f"{agree:.1f}"])
    return rows


def flops_of(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=256, help="test dialogues to encode")
    parser.add_argument("--responses", type=int, default=512, help="text responses to encode")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print_machine(device)
    auto = resolve_precision("auto", device)
    print(f"# precision='auto' resolves to {auto} on {device}")
    with tempfile.TemporaryDirectory() as workdir:
        model, processor, st = build(args, workdir, device)
        test, dialogues, flat, responses, texts = corpus_inputs(args, processor)
    lengths = processor(dialogues=dialogues)["attention_mask"].sum(1).float()
    print(f"# {len(dialogues)} contexts (mean {lengths.mean():.1f} tokens, max {int(lengths.max())}), "
          f"{len(texts)} text responses; batch {args.batch_size}; threads {torch.get_num_threads()}")
    print(f"# same inputs: min cosine(ST embedding, our pooled BERT output) = "
          f"{check_same_inputs(model, processor, st, dialogues, flat):.6f}")
    bs = args.batch_size

    def st_run(items: list[str], precision: str) -> Callable[[], object]:
        def run() -> object:
            with precision_context(device, precision):
                return st.encode(items, batch_size=bs, convert_to_tensor=True, show_progress_bar=False)
        return run

    variants = {
        "contexts": {
            "sentence-transformers fp32": st_run(flat, "fp32"),
            "hf_dialret fp32": lambda: encode_contexts(model, processor, dialogues, bs, "fp32"),
            "hf_dialret bf16": lambda: encode_contexts(model, processor, dialogues, bs, "bf16"),
            "sentence-transformers bf16 autocast": st_run(flat, "bf16"),
        },
        "responses": {
            "sentence-transformers fp32": st_run(texts, "fp32"),
            "hf_dialret fp32": lambda: encode_responses(model, processor, texts, bs, "fp32"),
            "hf_dialret bf16": lambda: encode_responses(model, processor, texts, bs, "bf16"),
            "sentence-transformers bf16 autocast": st_run(texts, "bf16"),
        },
    }
    peak = {dtype: matmul_flops(device, dtype) for dtype in (torch.float32, torch.bfloat16)}
    print(f"# matmul rate: fp32 {peak[torch.float32] / 1e9:.0f} GFLOP/s, bf16 {peak[torch.bfloat16] / 1e9:.0f} GFLOP/s")
    for kind, fns in variants.items():
        n = len(dialogues) if kind == "contexts" else len(texts)
        flops = {name: flops_of(fn) for name, fn in fns.items()}
        for fn in fns.values():
            fn()  # warm-up: allocator, oneDNN kernel selection
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}  # (wall, CPU) per run
        names = list(fns)
        for r in range(args.runs):
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order every run
                times[name].append(timed_both(fns[name], device))
        # Ratio per run (same load), then the median of the ratios; by wall time and by process CPU time (which
        # leaves out the time spent waiting for a core, so it moves far less with the other jobs' load).
        base = times["sentence-transformers fp32"]
        rows = []
        for name in names:
            t = median(wall for wall, _ in times[name])
            ratio = median(b[0] / x[0] for b, x in zip(base, times[name]))
            ratio_cpu = median(b[1] / x[1] for b, x in zip(base, times[name]))
            rate = peak[torch.bfloat16 if "bf16" in name else torch.float32]
            cpu_ratio = f"{ratio_cpu:.2f}×" if device.type == "cpu" else "–"  # GPU kernels are not CPU time
            rows.append([name, f"{n / t:,.0f}", f"{ratio:.2f}×", cpu_ratio,
                         f"{flops[name] / n / 1e9:.2f}", f"{100 * flops[name] / t / rate:.0f} %"])
        print(f"\n## {kind} ({n} per run, median of {args.runs}; load average {load_average()})\n")
        print(markdown_table([f"{kind} encoder", f"{kind}/s", "vs ST fp32, wall (same runs)",
                              "vs ST fp32, CPU time (same runs)", "GFLOP per item", "of matmul rate (same dtype)"],
                             rows))
    print("\n## ranking check: bf16 vs fp32 on the deduplicated synthetic test pool (texts + images)\n")
    print(markdown_table(["metric", "fp32 recall %", "bf16 recall %", "Δ points", "bf16 finds fp32's top-1 %"],
                         ranking_check(model, processor, test, dialogues, responses, bs)))
    print(f"\n# load average at end: {load_average()}")


if __name__ == "__main__":
    main()
