"""Train a DialCLIP prompt adapter (a PEFT method on a frozen CLIP) and evaluate it on every protocol.

    python examples/train_dialclip.py --output-dir runs/dialclip-synthetic          # offline: pretrained tiny CLIP
    python examples/train_dialclip.py --dataset photochat --data-dir data/photochat --image-dir data/photochat/images \\
        --clip-backbone openai/clip-vit-base-patch32 --learning-rate 1e-3 --output-dir runs/dialclip-photochat

The library API behind `hf-dialret train --architecture dialclip`, spelled out: build the adapter on its CLIP
(only the adapter trains), train with `DialogueRetrievalTrainer`, evaluate, save the adapter and its processor
(`hf_dialret.retrieval.loading.load_retriever(output_dir)` loads both back, CLIP included).
"""

import argparse
import json
import os

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", choices=["synthetic", "photochat", "mmdialog"])
    parser.add_argument("--data-dir", help="PhotoChat / MMDialog folder")
    parser.add_argument("--image-dir", help="photo folder")
    parser.add_argument("--clip-backbone", default="tiny",
                        help="CLIP Hub id or directory with its processor; tiny: a 2-layer CLIP pretrained here on "
                             "captioned synthetic pictures (cached)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=64, help="per device; every other example is a negative")
    parser.add_argument("--learning-rate", type=float, default=1e-2,
                        help="the adapter's (default 1e-2, measured on the tiny CLIP; smaller for a real CLIP)")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--tiny-clip-pretrain-steps", type=int, default=None,
                        help="--clip-backbone tiny: its contrastive pretraining steps (default 600)")
    parser.add_argument("--num-train-dialogues", type=int, default=20000, help="synthetic corpus only")
    parser.add_argument("--num-test-dialogues", type=int, default=2000, help="synthetic corpus only")
    args = parser.parse_args()

    from hf_dialret.data import DialogueRetrievalCollator
    from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments
    from hf_dialret.training.recipes import build_dialclip, dataset_vocabulary, load_retrieval_dataset

    data = load_retrieval_dataset(args.dataset, args.data_dir, args.image_dir, splits=("train", "test"),
                                  num_train_dialogues=args.num_train_dialogues,
                                  num_test_dialogues=args.num_test_dialogues)
    # a tiny CLIP's tokenizer covers the training words (the synthetic corpus's by default)
    vocabulary = dataset_vocabulary(data["train"]) if args.dataset != "synthetic" else None
    model, processor = build_dialclip(args.clip_backbone, args.output_dir, vocabulary,
                                      tiny_clip_pretrain_steps=args.tiny_clip_pretrain_steps)
    training_args = DialogueRetrievalTrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_steps=args.max_steps, warmup_steps=0.1, lr_scheduler_type="cosine", logging_steps=20,
        save_strategy="no", use_cpu=not torch.cuda.is_available(), report_to="none",
    )
    trainer = DialogueRetrievalTrainer(model=model, args=training_args, train_dataset=data["train"],
                                       data_collator=DialogueRetrievalCollator(processor), processing_class=processor)
    trainer.train()
    report = trainer.retrieval_report(data["test"])
    trainer.save_model(args.output_dir)  # the adapter only: adapter_config.json names its base CLIP
    processor.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "eval_results.json"), "w") as handle:
        json.dump({"dataset": args.dataset, "split": "test", "results": report}, handle, indent=2)
    for group, metrics in report["multimodal"].items():
        if isinstance(metrics, dict) and "recall@1" in metrics:
            print(f"multimodal R@1 ({group}): {metrics['recall@1']:.3f}  R@10: {metrics['recall@10']:.3f}")


if __name__ == "__main__":
    main()
