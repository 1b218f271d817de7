"""Run under ``torchrun --nproc_per_node 2`` by test_distributed.py (gloo, CPU). Writes a JSON report on rank 0.

1. Gradient check: each rank takes its half of one fixed global batch (with a response duplicated *across* ranks),
   runs ``DialogueRetrievalTrainer.compute_loss`` through a DDP-wrapped model and backpropagates; DDP averages the
   gradients. Rank 0 compares the mean loss and the averaged gradients with the model's own single-process loss on
   the whole global batch. The model is in eval mode so that dropout and BatchNorm batch statistics (which would
   differ between a half batch and the global batch) do not enter; gradients are computed all the same. It runs in
   float64, so the only differences left are the summation orders of the collectives (~1e-15), far below 1e-5.
2. Trainer smoke test: two training steps and an evaluation with the Trainer's own DDP wrapping; every rank must
   report the same metrics over all evaluation queries.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retriever_fixtures import collator, tiny_corpus, tiny_model, tiny_processor  # noqa: E402

from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments  # noqa: E402


def build(name: str, processor):
    """``mdr``, ``dr``...: a tiny retriever; a ``-symmetric`` suffix turns on the symmetric (two-direction) loss."""
    architecture, _, variant = name.partition("-")
    model = tiny_model(architecture, processor)
    model.config.symmetric_loss = variant == "symmetric"
    return model


def check(architecture: str, args: DialogueRetrievalTrainingArguments, processor, corpus) -> dict:
    """The gradient check and the Trainer smoke test for one architecture; the report (rank 0) or {}."""
    rank, world = dist.get_rank(), dist.get_world_size()
    train = [corpus["train"][i] for i in range(len(corpus["train"]))]
    texts = [row for row in train if row["response"]["modality"] == "text"]
    images = [row for row in train if row["response"]["modality"] == "image"]
    # Two text and two image responses per rank: DR/SDR average their text and image losses per rank, which equals
    # the global average only for equal per-rank counts (MDR's single loss has no such condition).
    rows = [texts[0], images[0], texts[1], images[1], texts[2], images[2], texts[3], images[3]]
    rows[7] = {**rows[7], "response": rows[1]["response"]}  # a duplicate across ranks: masked, not a negative
    global_batch = collator(processor)(rows)
    # Response tensors are stacked per modality, so a rank's batch is collated from its own examples.
    local = collator(processor)(rows[rank * 4 : (rank + 1) * 4])
    global_batch, local = ({k: v.double() if v.is_floating_point() else v for k, v in b.items()} for b in (global_batch, local))

    model = build(architecture, processor).double().eval()
    trainer = DialogueRetrievalTrainer(model=model, args=args, data_collator=collator(processor), processing_class=processor)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss = trainer.compute_loss(ddp, local)
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= world

    reference = build(architecture, processor).double().eval()
    reference_loss = reference(**global_batch).loss
    reference_loss.backward()
    grads = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
    ref_grads = {name: param.grad for name, param in reference.named_parameters() if param.grad is not None}
    max_grad_diff = max(float((grads[name] - ref_grads[name]).abs().max()) for name in ref_grads)
    local_only = DialogueRetrievalTrainer(model=build(architecture, processor).double().eval(), args=args)
    local_only.args.gather_negatives_across_processes = False
    local_only_loss = float(local_only.compute_loss(local_only.model, local).detach())

    smoke = DialogueRetrievalTrainer(
        model=build(architecture, processor), args=args, train_dataset=corpus["train"],
        data_collator=collator(processor), processing_class=processor,
    )
    smoke.args.gather_negatives_across_processes = True
    smoke.train()
    metrics = smoke.evaluate(corpus["test"])
    all_metrics = [None] * world
    dist.all_gather_object(all_metrics, metrics)
    return {
        "loss": float(mean_loss), "reference_loss": float(reference_loss), "max_grad_diff": max_grad_diff,
        "missing_grads": sorted(set(ref_grads) - set(grads)), "local_only_loss": local_only_loss,
        "steps": smoke.state.global_step, "metrics": all_metrics,
    }


def main(output: str, architectures: list[str]) -> None:
    torch.set_num_threads(1)
    args = DialogueRetrievalTrainingArguments(
        output_dir=os.path.join(os.path.dirname(output), "trainer"), per_device_train_batch_size=4, max_steps=2,
        save_strategy="no", report_to="none", use_cpu=True, ddp_backend="gloo", disable_tqdm=True,
        per_device_eval_batch_size=8, learning_rate=1e-3,
    )
    processor = tiny_processor()
    corpus = tiny_corpus(num_train=24, num_test=9)
    reports = {architecture: check(architecture, args, processor, corpus) for architecture in architectures}
    if dist.get_rank() == 0:
        with open(output, "w") as handle:
            json.dump(reports, handle)
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
