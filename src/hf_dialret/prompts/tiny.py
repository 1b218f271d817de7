"""A tiny, randomly initialised CLIP (+ tokenizer and image processor) built in code, for tests, examples and CPU runs.

Nothing is downloaded: the tokenizer is a real `CLIPTokenizer` (byte-level BPE) whose vocabulary holds every
printable ASCII character (so no text is ever unknown) plus one whole-word token for each word it is given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

from ..modeling.configuration_dialclip import CLIP_MAX_TEXT_POSITIONS
from ..modeling.processing_dialclip import DialCLIPProcessor

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def tiny_clip_tokenizer(vocab_words: Iterable[str], model_max_length: int = CLIP_MAX_TEXT_POSITIONS) -> CLIPTokenizer:
    """A `CLIPTokenizer` over printable ASCII characters plus whole-word merges for ``vocab_words`` (lower-cased)."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = {BOS: 0, EOS: 1}
    for token in chars + [c + "</w>" for c in chars]:
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    # CLIP's pre-tokenizer splits letters from digits and punctuation, so only letter runs can become whole words.
    words = sorted({w for text in vocab_words for w in re.findall(r"[a-z]+", str(text).lower()) if len(w) > 1})
    for word in words:
        current = word[0]
        for i, char in enumerate(word[1:], start=1):
            piece = char + ("</w>" if i == len(word) - 1 else "")
            merged = current + piece
            if merged not in vocab:  # left-to-right merges: each word ends as one "<word></w>" token
                vocab[merged] = len(vocab)
                merges.append((current, piece))
            current = merged
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def tiny_clip_model(
    tokenizer: CLIPTokenizer,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    max_text_length: int = CLIP_MAX_TEXT_POSITIONS,
    seed: int = 0,
) -> CLIPModel:
    """A tiny randomly initialised `CLIPModel` whose text tower matches ``tokenizer`` (vocabulary, special ids)."""
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, max_position_embeddings=max_text_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size)
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)
    with torch.random.fork_rng():  # deterministic weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        return CLIPModel(config)


def tiny_clip_processor(
    tokenizer: CLIPTokenizer, image_size: int, max_text_length: int = CLIP_MAX_TEXT_POSITIONS
) -> DialCLIPProcessor:
    """A ``DialCLIPProcessor`` over ``tokenizer`` and a CLIP image processor resizing pictures to ``image_size``."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return DialCLIPProcessor(image_processor, tokenizer, max_text_length=max_text_length)


def save_tiny_clip(
    output_dir: str | os.PathLike,
    vocab_words: Iterable[str] = (),
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    max_text_length: int = CLIP_MAX_TEXT_POSITIONS,
    seed: int = 0,
) -> Path:
    """Save a tiny random `CLIPModel` with its tokenizer and image processor (a ``DialCLIPProcessor``) to
    ``output_dir``; it loads with ``CLIPModel.from_pretrained``, ``DialCLIPModel.from_clip`` /
    ``build_dialclip_for_training`` and ``DialCLIPProcessor.from_pretrained``. Returns the directory.

    Random weights suit unit tests; :func:`hf_dialret.prompts.pretrain_tiny_clip` gives a tiny CLIP that was
    pretrained contrastively on captioned synthetic pictures (what ``--clip-backbone tiny`` trains DialCLIP on).
    """
    tokenizer = tiny_clip_tokenizer(vocab_words, model_max_length=max_text_length)
    model = tiny_clip_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                            projection_dim=projection_dim, image_size=image_size, patch_size=patch_size,
                            max_text_length=max_text_length, seed=seed)
    output = Path(output_dir)
    model.save_pretrained(output)
    tiny_clip_processor(tokenizer, image_size, max_text_length).save_pretrained(output)
    return output


__all__ = ["save_tiny_clip", "tiny_clip_model", "tiny_clip_processor", "tiny_clip_tokenizer"]
