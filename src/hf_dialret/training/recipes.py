"""Building blocks of a training run, shared by the ``hf-dialret`` commands and ``examples/`` (no CLI code here).

- :func:`load_retrieval_dataset`: the synthetic corpus, PhotoChat or MMDialog as a ``DatasetDict`` of unified rows.
- :func:`resolve_backbones`: ``"tiny"`` (built in code, offline) or a Hub id / local directory, checked early with
  an error that says what to pass when the backbone is not available offline.
- :func:`build_retriever`: model + processor of an architecture from those backbones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from ..data.synthetic import DEFAULT_IMAGE_FRACTION

#: Architecture name -> model class name in ``hf_dialret`` (DialCLIP is trained as a PEFT adapter, see
#: :func:`build_dialclip`).
ARCHITECTURE_CLASSES = {
    "dr": "DualRetrieverModel",
    "sdr": "SharedDualRetrieverModel",
    "mdr": "MultimodalDualRetrieverModel",
    "dialclip": "DialCLIPModel",
}
DATASETS = ("synthetic", "photochat", "mmdialog")
TINY = "tiny"


class RecipeError(ValueError):
    """A run asks for something that does not exist (architecture, dataset); the message lists the choices."""


class BackboneNotFoundError(OSError):
    """A backbone is neither a local directory nor in the offline Hub cache."""


def load_retrieval_dataset(
    name: str,
    data_dir: str | None = None,
    image_dir: str | None = None,
    splits: Iterable[str] = ("train", "test"),
    num_train_dialogues: int = 20000,
    num_test_dialogues: int = 2000,
    seed: int = 0,
    cache_dir: str | None = None,
    image_fraction: float = DEFAULT_IMAGE_FRACTION,
    on_error: str = "raise",
) -> datasets.DatasetDict:
    """Load ``splits`` of a dataset in the unified schema.

    ``synthetic`` is generated (``num_*_dialogues``, ``seed``; ``image_fraction``: the share of picture requests);
    ``photochat`` / ``mmdialog`` read ``data_dir`` (and photos from ``image_dir``). MMDialog's validation/test splits
    carry the 999 + 999 per-example candidates. ``on_error`` (``"raise"`` / ``"skip"``) goes to their readers.
    """
    from ..data import load_mmdialog, load_photochat, make_synthetic_corpus

    if name not in DATASETS:
        raise RecipeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "synthetic":
        corpus = make_synthetic_corpus(
            num_train_dialogues, seed=seed, num_test_dialogues=num_test_dialogues, cache_dir=cache_dir,
            image_fraction=image_fraction,
        )
        return datasets.DatasetDict({split: corpus[split] for split in splits})
    if not data_dir:
        raise FileNotFoundError(f"--data-dir is required for {name}: the folder with the {name} files")
    if not os.path.exists(data_dir):
        raise FileNotFoundError(f"{name} data dir {data_dir!r} does not exist")
    if name == "photochat":
        return datasets.DatasetDict(
            {split: load_photochat(data_dir, split, image_dir=image_dir, cache_dir=cache_dir, on_error=on_error)
             for split in splits}
        )
    return datasets.DatasetDict(
        {split: load_mmdialog(data_dir, split, image_dir=image_dir, cache_dir=cache_dir, on_error=on_error)
         for split in splits}
    )


def dataset_vocabulary(dataset: datasets.Dataset, limit: int = 30000) -> list[str]:
    """The most frequent words of the texts of ``dataset`` (for a tiny tokenizer on a non-synthetic corpus)."""
    from collections import Counter

    from ..data import tokenize_words

    counts: Counter[str] = Counter()
    table = dataset.select_columns(["context", "response"]).with_format("arrow")[:]
    for turns in table.column("context").to_pylist():
        for turn in turns:
            counts.update(tokenize_words(turn.get("text") or ""))
    for text in table.column("response").combine_chunks().field("text").to_pylist():
        counts.update(tokenize_words(text or ""))
    return [word for word, _ in counts.most_common(limit)]


def _check_backbone(path: str, role: str, flag: str) -> None:
    """Fail early, and clearly, when ``path`` can be neither read locally nor from the offline cache."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise BackboneNotFoundError(
            f"cannot load the {role} backbone {path!r}: it is not a local directory with a config.json and it is not "
            f"in the Hugging Face cache (no network here). Pass {flag} <local dir> (a model saved with "
            f"save_pretrained, with its {'tokenizer' if role == 'text' else 'image processor'}), or {flag} tiny for "
            f"the tiny built-in preset. ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error


TINY_IMAGE_SIZE = 128


def resolve_backbones(
    text: str, vision: str, work_dir: str | os.PathLike, vocabulary: Iterable[str] | None = None, seed: int = 0
) -> tuple[str, str]:
    """Directories (or Hub ids) of the text and vision backbones; ``"tiny"`` ones are written under ``work_dir``.

    ``vocabulary`` is the word list of the tiny tokenizer (default: the synthetic corpus's, which it covers fully).
    """
    if TINY in (text, vision):
        from ..backbones import save_tiny_backbones
        from ..data import synthetic_vocabulary

        words = list(vocabulary) if vocabulary is not None else list(synthetic_vocabulary())
        # 128 px: the synthetic pictures are 48 px, and ResNet's stem (stride-2 conv + stride-2 max-pool) would leave
        # 12x12 maps in which the shapes blur together (shape is the image side's main error). Measured on the main
        # job (300 s, 2 cores): 96 px 0.444 / 0.212 overall / image R@1, 128 px 0.485 / 0.279, 160 px 0.447 / 0.209
        # (fewer steps in the budget).
        tiny_text, tiny_vision = save_tiny_backbones(
            Path(work_dir) / "tiny-backbones", words, seed=seed, image_size=TINY_IMAGE_SIZE
        )
        text = tiny_text if text == TINY else text
        vision = tiny_vision if vision == TINY else vision
    _check_backbone(text, "text", "--text-backbone")
    _check_backbone(vision, "vision", "--vision-backbone")
    return text, vision


def check_clip_backbone(clip_backbone: str) -> None:
    """Fail early for a CLIP backbone DialCLIP cannot train from: an open_clip name (no processor) or one that is
    neither a local directory nor cached. Call it before loading data, so the error comes first."""
    if clip_backbone.startswith("open_clip:"):
        raise RecipeError("training DialCLIP from an open_clip name needs a processor: convert it once with "
                          "DialCLIPModel.from_open_clip(...).save_pretrained(dir) and pass --clip-backbone <dir>")
    if clip_backbone != TINY:
        _check_backbone(clip_backbone, "CLIP", "--clip-backbone")


def build_dialclip(
    clip_backbone: str, work_dir: str | os.PathLike, vocabulary: Iterable[str] | None = None, seed: int = 0,
    tiny_clip_pretrain_steps: int | None = None,
    prompt_overrides: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """``(peft_model, processor)``: a frozen CLIP with a fresh DialCLIP prompt adapter (the only trainable part).

    ``clip_backbone`` is a CLIP Hub id or directory, ``open_clip:<name>[/<tag>]``, or ``"tiny"``: a 2-layer CLIP
    pretrained contrastively on captioned synthetic pictures (:func:`hf_dialret.prompts.pretrain_tiny_clip`,
    ``tiny_clip_pretrain_steps`` steps, default its own; cached), written under ``work_dir``, whose tokenizer
    covers ``vocabulary`` (default the synthetic corpus's), with the adapter of
    :func:`hf_dialret.prompts.tiny_clip_prompt_config` (context prompts from layer 1 of its 2).
    ``prompt_overrides``: :class:`~hf_dialret.DialCLIPPromptConfig` fields set over those defaults (the paper's for
    a real CLIP, the tiny CLIP's above).
    """
    from ..modeling.processing_dialclip import DialCLIPProcessor
    from ..prompts import DialCLIPPromptConfig, build_dialclip_for_training, pretrain_tiny_clip, tiny_clip_prompt_config

    prompt_config = None
    if clip_backbone == TINY:
        from ..data import synthetic_vocabulary

        words = list(vocabulary) if vocabulary is not None else list(synthetic_vocabulary())
        steps = {} if tiny_clip_pretrain_steps is None else {"steps": tiny_clip_pretrain_steps}
        clip_backbone = str(pretrain_tiny_clip(Path(work_dir) / "tiny-clip", words, seed=seed, **steps))
        prompt_config = tiny_clip_prompt_config(**(prompt_overrides or {}))
    else:
        check_clip_backbone(clip_backbone)
        prompt_config = DialCLIPPromptConfig(**prompt_overrides) if prompt_overrides else None
    model = build_dialclip_for_training(clip_backbone, prompt_config)
    return model, DialCLIPProcessor.from_pretrained(clip_backbone)


def build_retriever(architecture: str, text: str, vision: str, **config_kwargs: Any) -> tuple[Any, Any]:
    """``(model, processor)`` of ``architecture`` (``dr``, ``sdr``, ``mdr``) on the given backbones."""
    import hf_dialret

    if architecture == "dialclip":
        raise RecipeError("DialCLIP is built from a CLIP backbone: use build_dialclip(clip_backbone, ...)")
    if architecture not in ARCHITECTURE_CLASSES:
        raise RecipeError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURE_CLASSES)}")
    processor = hf_dialret.DialogueRetrievalProcessor.from_backbones(text, vision)
    model_class = getattr(hf_dialret, ARCHITECTURE_CLASSES[architecture])
    model = model_class.from_backbones(text, vision, image_token_id=processor.image_token_id, **config_kwargs)
    return model, processor
