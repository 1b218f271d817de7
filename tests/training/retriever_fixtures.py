"""Tiny retrievers and synthetic examples for the training tests (importable by the torchrun worker too).

Everything is built in memory from the synthetic corpus's vocabulary: a 1-layer BERT (hidden 32) and a 2-stage
ResNet, so a training step on a handful of examples takes milliseconds.
"""

from __future__ import annotations

import torch

import hf_dialret
from hf_dialret.backbones import build_tiny_tokenizer, tiny_image_processor, tiny_text_config, tiny_vision_config
from hf_dialret.data import DialogueRetrievalCollator, make_synthetic_corpus, synthetic_vocabulary

CLASSES = {"dr": "DualRetriever", "sdr": "SharedDualRetriever", "mdr": "MultimodalDualRetriever"}


def tiny_processor() -> hf_dialret.DialogueRetrievalProcessor:
    tokenizer = build_tiny_tokenizer(synthetic_vocabulary())
    return hf_dialret.DialogueRetrievalProcessor(tiny_image_processor(32), tokenizer, max_context_length=96)


def tiny_model(architecture: str, processor: hf_dialret.DialogueRetrievalProcessor, seed: int = 0, dropout: float = 0.1):
    """A tiny ``architecture`` retriever (random weights, seeded) matching ``processor``."""
    name = CLASSES[architecture]
    text = tiny_text_config(
        len(processor.tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    vision = tiny_vision_config(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    config = getattr(hf_dialret, f"{name}Config")(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16, pooling="mean",
        image_token_id=processor.image_token_id, classifier_dropout=dropout,
    )
    torch.manual_seed(seed)
    return getattr(hf_dialret, f"{name}Model")(config)


def tiny_corpus(num_train: int = 48, num_test: int = 40, seed: int = 0):
    """The synthetic corpus at test size (32 px pictures)."""
    return make_synthetic_corpus(num_train, seed=seed, image_size=32, num_validation_dialogues=4, num_test_dialogues=num_test)


def collator(processor: hf_dialret.DialogueRetrievalProcessor) -> DialogueRetrievalCollator:
    return DialogueRetrievalCollator(processor)
