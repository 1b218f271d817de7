"""Contrastive pretraining of the tiny CLIP on captioned synthetic pictures: a stand-in for CLIP's web pretraining.

DialCLIP keeps CLIP frozen and only steers it with prompts and small projection experts, so it needs a CLIP whose
text and image towers are already aligned. A random tiny CLIP has no such alignment (measured: DialCLIP on it stays
near chance), and no real CLIP fits a 2-core CPU budget, so ``--clip-backbone tiny`` first pretrains a tiny CLIP the
way CLIP was pretrained: image–caption InfoNCE (``CLIPModel(..., return_loss=True)``), here on pictures drawn by the
synthetic corpus's own renderer with captions made from their attributes ("two red stars on a sand background").

What it sees, and what it does not: only pictures and captions, never a dialogue. Pictures are jittered like the
corpus's training pictures, and the colour-shape pairs held out of the corpus's training pictures
(:func:`~hf_dialret.data.synthetic_render.is_held_out`) are held out here too, so composing them stays a test of
generalisation. The caption templates are our own wording, not the corpus's dialogue templates.

The result is cached on disk, keyed by every setting, the vocabulary and a format version, so tests and repeated
runs reuse it (``$HF_DIALRET_CACHE``, default ``~/.cache/hf_dialret``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import CLIPModel, get_cosine_schedule_with_warmup

from ..data.synthetic_render import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    COUNT_WORDS,
    SHAPE_NAMES,
    SHAPES,
    Picture,
    is_held_out,
    render_picture,
)
from ..metrics.recall_at_k.recall_at_k import ranks_from_scores
from .config import DialCLIPPromptConfig
from .tiny import tiny_clip_model, tiny_clip_processor, tiny_clip_tokenizer

logger = logging.getLogger(__name__)

#: Bump when captions, pictures or the training loop change, so stale cached CLIPs are not reused.
FORMAT_VERSION = 1
RECORD_FILE = "tiny_clip_pretraining.json"
CACHE_ENV = "HF_DIALRET_CACHE"
#: Pictures are drawn at the corpus's size (``make_synthetic_corpus(image_size=48)``); the processor resizes them.
PICTURE_SIZE = 48

#: Caption templates (our wording, not the dialogue templates). Partial captions leave attributes out, as web
#: captions do, so that the text tower also places short phrases ("red stars") near the pictures they fit.
FULL_CAPTIONS = (
    "{n} {colour} {shapes} on a {bg} background",
    "a picture of {n} {colour} {shapes} on a {bg} background",
    "a {bg} background with {n} {colour} {shapes}",
    "{n} {colour} {shapes} over a {bg} background",
    "a photo showing {n} {colour} {shapes} against {bg}",
)
PARTIAL_CAPTIONS = (
    "{colour} {shapes} on a {bg} background",
    "{n} {colour} {shapes}",
    "{n} {shapes} on a {bg} background",
    "a picture of {colour} {shapes}",
    "{n} {shapes}",
    "{colour} {shapes}",
)
CAPTION_WORDS = tuple(sorted({w for t in FULL_CAPTIONS + PARTIAL_CAPTIONS for w in t.split() if "{" not in w}))


@dataclass(frozen=True)
class TinyClipPretrainingArguments:
    """Every setting of the pretraining; together with the vocabulary they key the cache."""

    steps: int = 600
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    partial_caption_probability: float = 0.3
    picture_copies: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    projection_dim: int = 64
    image_size: int = 32
    patch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if self.picture_copies < 1:
            raise ValueError(f"picture_copies must be >= 1, got {self.picture_copies}")
        if not 0.0 <= self.partial_caption_probability <= 1.0:
            raise ValueError(f"partial_caption_probability must be in [0, 1], got {self.partial_caption_probability}")


def tiny_clip_prompt_config(**overrides: Any) -> DialCLIPPromptConfig:
    """The DialCLIP adapter configuration for the tiny CLIP: the paper's defaults, but context prompts from layer 1.

    The paper inserts context prompts at the 2nd of CLIP's 12 text layers, leaving them 11 layers to act through. The
    tiny CLIP has 2, so the 2nd layer would leave a single frozen layer; measured on the synthetic corpus (200
    steps, lr 3e-3 to 2e-2), adapters trained that way collapse every response embedding onto nearly one point
    (pairwise cosine 0.98) and stay near chance, while from layer 1 they reach multimodal R@10 0.40-0.45 on a
    300-dialogue pool (untrained: 0.04).
    """
    return DialCLIPPromptConfig(**{"context_prompt_layer": 1, **overrides})


def canonical_caption(picture: Picture) -> str:
    """The one full caption used to evaluate caption → picture retrieval."""
    return FULL_CAPTIONS[0].format(**_slots(picture))


def _slots(picture: Picture) -> dict[str, str]:
    return {"n": COUNT_WORDS[picture.count], "colour": picture.colour, "bg": picture.background,
            "shapes": picture.shape if picture.count == 1 else SHAPES[picture.shape]}


def all_pictures() -> list[Picture]:
    """The corpus's 576 attribute combinations (8 colours x 6 shapes x 3 counts x 4 backgrounds)."""
    return [Picture(c, s, n, b) for c in COLOUR_NAMES for s in SHAPE_NAMES for n in COUNT_WORDS for b in BACKGROUND_NAMES]


def training_pictures() -> list[Picture]:
    """The 432 combinations whose colour-shape pair may appear in a training picture."""
    return [p for p in all_pictures() if not is_held_out(p.colour, p.shape)]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where pretrained tiny CLIPs are cached: ``cache_dir``, else ``$HF_DIALRET_CACHE``, else ~/.cache/hf_dialret."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hf_dialret")


def cache_key(arguments: TinyClipPretrainingArguments, vocab_words: Iterable[str]) -> str:
    """A digest of the settings, the vocabulary and the format version (the cache entry's name)."""
    spec = {"version": FORMAT_VERSION, "arguments": asdict(arguments), "vocab": sorted(set(vocab_words))}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def read_pretraining_record(clip_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record a pretrained tiny CLIP directory carries (settings, seconds, losses, caption retrieval), if any."""
    path = Path(clip_dir) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def pretrain_tiny_clip(
    output_dir: str | os.PathLike,
    vocab_words: Iterable[str] = (),
    arguments: TinyClipPretrainingArguments | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Write a tiny CLIP pretrained on captioned synthetic pictures to ``output_dir`` and return the directory.

    The directory loads with ``CLIPModel.from_pretrained`` and ``DialCLIPProcessor.from_pretrained`` (tokenizer
    covering ``vocab_words`` plus the caption words) and holds ``tiny_clip_pretraining.json``: settings, cache key,
    seconds, first/last loss and caption → picture retrieval before/after. It is reused when ``output_dir`` already
    holds the same pretraining, copied from the cache when the cache has it, and otherwise trained (then cached).

    Args:
        output_dir: where the CLIP goes; a previous tiny CLIP there is replaced (kept when it holds the same
            pretraining), any other non-empty directory raises ``FileExistsError``.
        vocab_words: texts whose words become whole tokens of the tokenizer (e.g. the corpus vocabulary).
        arguments: the settings; keyword ``overrides`` replace single fields (``steps=20, hidden_size=32``).
        cache_dir: the cache root (default :func:`cache_root`); ``use_cache=False`` neither reads nor writes it.
        progress: show a tqdm bar over the steps.
    """
    arguments = TinyClipPretrainingArguments(**{**asdict(arguments or TinyClipPretrainingArguments()), **overrides})
    words = sorted({*vocab_words, *CAPTION_WORDS, *COLOUR_NAMES, *SHAPES, *SHAPES.values(), *BACKGROUND_NAMES,
                    *COUNT_WORDS.values()})
    key = cache_key(arguments, words)
    output = Path(output_dir)
    record = read_pretraining_record(output)
    if record is not None and record.get("cache_key") == key:
        return output
    _check_replaceable(output)
    cached = cache_root(cache_dir) / "tiny-clip" / key
    if use_cache and read_pretraining_record(cached) is not None:
        logger.info("reusing the pretrained tiny CLIP cached at %s", cached)
        _replace_dir(cached, output)
        return output

    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / "clip"
        _train_and_save(built, words, arguments, key, progress)
        if use_cache:
            _store_in_cache(built, cached)
        _replace_dir(built, output)
    return output


def _check_replaceable(target: Path) -> None:
    """Fail before any work when ``target`` is a non-empty directory that is not a (previous) CLIP checkpoint."""
    if not target.exists():
        return
    config = target / "config.json"
    is_clip = config.is_file() and json.loads(config.read_text()).get("model_type") == "clip"
    if not target.is_dir() or (any(target.iterdir()) and not is_clip):
        raise FileExistsError(
            f"{target} exists and does not hold a tiny CLIP, which pretrain_tiny_clip would replace. Pass a new or "
            "empty directory (or one holding a previous tiny CLIP)."
        )


def _replace_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def _store_in_cache(built: Path, cached: Path) -> None:
    """Copy into the cache through a temporary sibling + rename, so a concurrent reader never sees half a model."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
        shutil.copytree(built, partial, dirs_exist_ok=True)
        try:
            partial.rename(cached)
        except OSError:  # another process cached the same key first: theirs is equally good
            shutil.rmtree(partial, ignore_errors=True)
    except OSError as error:  # a read-only home must not fail the run, only cost a retrain next time
        logger.warning("could not cache the pretrained tiny CLIP under %s: %s", cached.parent, error)


def _train_and_save(
    output: Path, words: list[str], arguments: TinyClipPretrainingArguments, key: str, progress: bool
) -> None:
    from tqdm.auto import tqdm

    tokenizer = tiny_clip_tokenizer(words)
    processor = tiny_clip_processor(tokenizer, arguments.image_size)
    model = tiny_clip_model(
        tokenizer, hidden_size=arguments.hidden_size, num_layers=arguments.num_layers,
        num_heads=arguments.num_heads, projection_dim=arguments.projection_dim, image_size=arguments.image_size,
        patch_size=arguments.patch_size, seed=arguments.seed,
    )
    start = time.perf_counter()
    pictures = training_pictures()
    rng = random.Random(f"hf_dialret-tiny-clip/{arguments.seed}")  # jitter, batches and captions
    pixels, captions = _training_bank(pictures, processor, arguments, rng)
    num_full, num_partial = len(FULL_CAPTIONS), len(PARTIAL_CAPTIONS)
    batch_size = min(arguments.batch_size, len(pictures))  # distinct pictures per batch: no duplicate positives
    evaluation = all_pictures()
    evaluation_inputs = _caption_retrieval_inputs(processor, evaluation)
    before = _caption_retrieval(model, evaluation_inputs, evaluation)
    losses: list[float] = []
    with torch.random.fork_rng():  # the model has no dropout, but keep the caller's RNG untouched all the same
        torch.manual_seed(arguments.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=arguments.learning_rate,
                                      weight_decay=arguments.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(
            optimizer, math.ceil(arguments.warmup_fraction * arguments.steps), max(arguments.steps, 1)
        )
        model.train()
        bar = tqdm(range(arguments.steps), desc="pretraining the tiny CLIP", disable=not progress)
        for _ in bar:
            chosen = rng.sample(range(len(pictures)), batch_size)
            copies = [rng.randrange(arguments.picture_copies) for _ in chosen]
            variants = [num_full + rng.randrange(num_partial) if rng.random() < arguments.partial_caption_probability
                        else rng.randrange(num_full) for _ in chosen]
            input_ids = captions["input_ids"][chosen, variants]
            attention_mask = captions["attention_mask"][chosen, variants]
            length = int(attention_mask.sum(1).max())  # the bank is padded to its longest caption; trim to the batch's
            loss = model(
                input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length],
                pixel_values=pixels[chosen, copies], return_loss=True,
            ).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    seconds = time.perf_counter() - start
    after = _caption_retrieval(model.eval(), evaluation_inputs, evaluation)
    window = max(1, min(20, len(losses) // 5))  # mean of a few steps: one batch's loss is noisy
    record = {
        "cache_key": key, "format_version": FORMAT_VERSION, "arguments": asdict(arguments),
        "seconds": round(seconds, 1), "num_training_pictures": len(pictures),
        "first_loss": round(sum(losses[:window]) / window, 4) if losses else None,
        "last_loss": round(sum(losses[-window:]) / window, 4) if losses else None,
        "caption_retrieval_before": before, "caption_retrieval_after": after,
    }
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / RECORD_FILE).write_text(json.dumps(record, indent=2))
    logger.info("pretrained the tiny CLIP in %.0f s: caption → picture R@1 %.3f → %.3f", seconds,
                before["overall"]["recall@1"], after["overall"]["recall@1"])


def _training_bank(
    pictures: list[Picture], processor: Any, arguments: TinyClipPretrainingArguments, rng: random.Random
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixels of ``picture_copies`` jittered renderings of each picture, (P, copies, 3, S, S), and every caption
    variant tokenised, (P, variants, L): processed once up front, because per-step image processing would cost
    as much as the training step itself on CPU."""
    images = [render_picture(p, PICTURE_SIZE, rng) for p in pictures for _ in range(arguments.picture_copies)]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    pixels = pixels.view(len(pictures), arguments.picture_copies, *pixels.shape[1:])
    texts = [t.format(**_slots(p)) for p in pictures for t in FULL_CAPTIONS + PARTIAL_CAPTIONS]
    tokens = processor.tokenizer(texts, padding="longest", truncation=True, max_length=processor.max_text_length,
                                 return_tensors="pt")
    variants = len(FULL_CAPTIONS) + len(PARTIAL_CAPTIONS)
    return pixels, {name: tokens[name].view(len(pictures), variants, -1) for name in ("input_ids", "attention_mask")}


def caption_retrieval(model: CLIPModel, processor: Any, pictures: list[Picture] | None = None) -> dict[str, Any]:
    """Caption → picture retrieval over canonical renderings of ``pictures`` (default: all 576).

    Each canonical caption ("two red stars on a sand background") ranks every picture; R@1 / R@5 are reported over
    all captions and separately for seen and held-out colour-shape pairs (the latter never appeared in pretraining,
    so they measure composition). Chance R@1 is 1 / len(pictures).
    """
    pictures = pictures or all_pictures()
    return _caption_retrieval(model, _caption_retrieval_inputs(processor, pictures), pictures)


def _caption_retrieval_inputs(processor: Any, pictures: list[Picture]) -> dict[str, torch.Tensor]:
    """Processed canonical captions and pictures (built once, scored before and after pretraining)."""
    return dict(processor(responses=[*map(canonical_caption, pictures),
                                     *(render_picture(p, PICTURE_SIZE) for p in pictures)]))


@torch.no_grad()
def _caption_retrieval(model: CLIPModel, inputs: dict[str, torch.Tensor], pictures: list[Picture]) -> dict[str, Any]:
    text = model.get_text_features(input_ids=inputs["response_input_ids"],
                                   attention_mask=inputs["response_attention_mask"])
    image = model.get_image_features(pixel_values=inputs["response_pixel_values"])
    text, image = (getattr(x, "pooler_output", x) for x in (text, image))  # transformers 5 may wrap the features
    scores = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(image, dim=-1).T
    # caption i's picture is picture i; 1-based ranks with ties counted against the caption, as every other recall
    ranks = ranks_from_scores(scores.numpy(), np.eye(len(pictures), dtype=bool))
    held_out = np.array([is_held_out(p.colour, p.shape) for p in pictures])

    def summary(mask: np.ndarray) -> dict[str, float | int]:
        return {"num_captions": int(mask.sum()), "recall@1": round(float((ranks[mask] <= 1).mean()), 4),
                "recall@5": round(float((ranks[mask] <= 5).mean()), 4)}

    report: dict[str, Any] = {"num_pictures": len(pictures), "chance_recall@1": round(1 / len(pictures), 4),
                              "overall": summary(np.ones_like(held_out))}
    if bool(held_out.any()) and not bool(held_out.all()):
        report["seen_pairs"], report["held_out_pairs"] = summary(~held_out), summary(held_out)
    return report


__all__ = [
    "CACHE_ENV",
    "RECORD_FILE",
    "TinyClipPretrainingArguments",
    "all_pictures",
    "cache_key",
    "cache_root",
    "canonical_caption",
    "caption_retrieval",
    "pretrain_tiny_clip",
    "read_pretraining_record",
    "tiny_clip_prompt_config",
    "training_pictures",
]
