"""Tiny backbones built in code: used by the tests, by the CLI's tiny preset and by examples (no download).

``save_tiny_backbones(dir, vocab_words)`` writes a tiny BERT (+ tokenizer with ``[IMG]``) and a tiny ResNet (+ image
processor) that ``XModel.from_backbones(text=text_dir, vision=vision_dir)`` and
``DialogueRetrievalProcessor.from_backbones(text_dir, vision_dir)`` load like any Hub checkpoint.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    ConvNextImageProcessor,
    PreTrainedConfig,
    ResNetConfig,
    ResNetModel,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .modeling.processing_dialogue_retrieval import DEFAULT_IMAGE_TOKEN, add_image_token

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", DEFAULT_IMAGE_TOKEN)
#: Always in the vocabulary: punctuation (BERT splits it off, and speaker marks use ":"), digits and letters.
BASE_WORDS = tuple(string.punctuation) + tuple(string.digits) + tuple(string.ascii_lowercase)


def tiny_vocab(vocab_words: Iterable[str]) -> list[str]:
    """Special tokens, then the base symbols, then ``vocab_words`` (lower-cased, de-duplicated, order kept)."""
    vocab: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    vocab.update(dict.fromkeys(BASE_WORDS))
    vocab.update(dict.fromkeys(w.lower() for w in vocab_words if w and not w.isspace()))
    return list(vocab)


def build_tiny_tokenizer(vocab_words: Iterable[str]) -> BertTokenizer:
    """A lower-casing WordPiece ``BertTokenizer`` over an in-memory vocabulary (incl. ``[IMG]`` as a special token).

    Words outside the vocabulary fall back to their letters (``##x`` pieces) rather than to ``[UNK]``.
    """
    vocab = tiny_vocab(vocab_words)
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits if f"##{c}" not in vocab]
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
        extra_special_tokens=[DEFAULT_IMAGE_TOKEN],
    )


def tiny_text_config(vocab_size: int, **overrides) -> BertConfig:
    """A 2-layer BERT, hidden 128, 4 heads (~0.4M parameters + the embeddings).

    Dropout is off: on CPU the dropout masks cost ~20 % of a training step, and minutes-long runs do not overfit.
    """
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def tiny_vision_config(**overrides) -> ResNetConfig:
    """A 4-stage basic-block ResNet, widths 16-128 (~0.7M parameters; 128 images of 48 px fwd+bwd in ~0.07 s)."""
    kwargs = dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic")
    kwargs.update(overrides)
    return ResNetConfig(**kwargs)


def tiny_image_processor(image_size: int = 48) -> ConvNextImageProcessor:
    """ResNet's image processor (ConvNext's, as for microsoft/resnet-50) at ``image_size`` px, no upscaling crop."""
    # crop_pct=1.0: resize the short side to image_size and centre-crop a square, instead of ResNet-50's
    # resize-to-256-then-crop-224 which would upscale ~48 px synthetic images.
    return ConvNextImageProcessor(
        size={"shortest_edge": image_size}, crop_pct=1.0,
        image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD,
    )


def tiny_retriever_config(config_class: type[PreTrainedConfig], tokenizer, **config_kwargs) -> PreTrainedConfig:
    """A tiny DR/SDR/MDR config (``config_class``) matching ``tokenizer``: tiny BERT + tiny ResNet, ``[IMG]`` id set.

    Pooling defaults to ``"mean"``: a randomly initialised encoder's [CLS] output is almost the same for every input
    (cosine ~0.999), which stalls from-scratch training; mean pooling does not have that problem.
    """
    config_kwargs.setdefault("image_token_id", add_image_token(tokenizer))
    config_kwargs.setdefault("pooling", "mean")
    return config_class(
        text_config=tiny_text_config(len(tokenizer)).to_dict(), vision_config=tiny_vision_config().to_dict(),
        **config_kwargs,
    )


def save_tiny_backbones(
    output_dir: str | os.PathLike,
    vocab_words: Iterable[str],
    image_size: int = 48,
    seed: int = 0,
    text_overrides: dict | None = None,
    vision_overrides: dict | None = None,
) -> tuple[str, str]:
    """Save a tiny BERT + tokenizer to ``output_dir/text`` and a tiny ResNet + image processor to ``output_dir/vision``.

    Returns ``(text_dir, vision_dir)``. Weights are random (seeded); the point is real ``from_pretrained`` loading.
    """
    text_dir, vision_dir = Path(output_dir) / "text", Path(output_dir) / "vision"
    tokenizer = build_tiny_tokenizer(vocab_words)
    torch.manual_seed(seed)
    # No pooler: the retrievers pool themselves, and a saved pooler would be reported as an unexpected key.
    text_model = BertModel(tiny_text_config(len(tokenizer), **(text_overrides or {})), add_pooling_layer=False)
    vision_model = ResNetModel(tiny_vision_config(**(vision_overrides or {})))
    text_model.save_pretrained(text_dir)
    tokenizer.save_pretrained(text_dir)
    vision_model.save_pretrained(vision_dir)
    tiny_image_processor(image_size).save_pretrained(vision_dir)
    return str(text_dir), str(vision_dir)


__all__ = [
    "SPECIAL_TOKENS",
    "build_tiny_tokenizer",
    "save_tiny_backbones",
    "tiny_image_processor",
    "tiny_retriever_config",
    "tiny_text_config",
    "tiny_vision_config",
    "tiny_vocab",
]
