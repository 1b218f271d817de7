"""Shared code of the training examples: the paper's setup (BERT-base + ResNet-50, in-batch negatives) on any dataset.

Run one of ``train_synthetic.py``, ``train_photochat.py`` or ``train_mmdialog.py``; this module only holds their
common argument parser and training function, written against the library API (``hf_dialret.training``).
"""

from __future__ import annotations

import argparse
import json
import os

import torch

PAPER_TEXT_BACKBONE = "bert-base-uncased"
PAPER_VISION_BACKBONE = "microsoft/resnet-50"


def parser(description: str, needs_data: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--architecture", choices=["dr", "sdr", "mdr"], default="mdr")
    p.add_argument("--text-backbone", default=PAPER_TEXT_BACKBONE, help="Hub id or local dir (or `tiny`)")
    p.add_argument("--vision-backbone", default=PAPER_VISION_BACKBONE, help="Hub id or local dir (or `tiny`)")
    p.add_argument("--data-dir", required=needs_data, default=None)
    p.add_argument("--image-dir", default=None)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=32, help="per device; every other example is a negative")
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs / AMX CPUs)")
    return p


def train(args: argparse.Namespace, dataset: str) -> dict:
    """Fine-tune ``args.architecture`` on ``dataset``; evaluate every protocol on the test split; save everything."""
    from hf_dialret.data import DialogueRetrievalCollator
    from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments
    from hf_dialret.training.recipes import (
        build_retriever, dataset_vocabulary, load_retrieval_dataset, resolve_backbones,
    )

    data = load_retrieval_dataset(dataset, args.data_dir, args.image_dir, splits=("train", "test"))
    # a tiny text backbone gets the words of this corpus (its default vocabulary is the synthetic corpus's)
    vocabulary = dataset_vocabulary(data["train"]) if dataset != "synthetic" and args.text_backbone == "tiny" else None
    text, vision = resolve_backbones(args.text_backbone, args.vision_backbone, args.output_dir, vocabulary)
    pooling = "mean" if args.text_backbone == "tiny" else "cls"
    model, processor = build_retriever(args.architecture, text, vision, pooling=pooling)
    training_args = DialogueRetrievalTrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
        num_train_epochs=args.epochs, bf16=args.bf16, save_strategy="epoch", logging_steps=50,
        # bf16 on a CPU-only machine needs use_cpu (transformers refuses it otherwise); fast with AMX only
        use_cpu=args.bf16 and not torch.cuda.is_available(),
    )
    trainer = DialogueRetrievalTrainer(model=model, args=training_args, train_dataset=data["train"],
                                       data_collator=DialogueRetrievalCollator(processor), processing_class=processor)
    trainer.train()
    report = trainer.retrieval_report(data["test"])
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "eval_results.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps({k: report[k] for k in ("multimodal", "text_retrieval", "image_retrieval") if k in report}, indent=2))
    return report
