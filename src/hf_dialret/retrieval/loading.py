"""Load a saved retriever and its processor from a directory or Hub id, for serving (CLI, examples).

Full models load with ``AutoModel`` (hf_dialret registers its classes on import); PEFT adapter directories
(DialCLIP) load their base model first, as named in ``adapter_config.json``, then the adapter on top.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from transformers import AutoModel, AutoProcessor


def _resolve_device(device: str | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_retriever(path: str, device: str | None = None, processor_path: str | None = None) -> tuple[Any, Any]:
    """Return ``(model, processor)`` in eval mode on ``device`` ("auto": CUDA when available)."""
    adapter_config = os.path.join(path, "adapter_config.json")
    has_config = os.path.isfile(os.path.join(path, "config.json"))
    if os.path.isdir(path) and not os.path.isfile(adapter_config) and not has_config:
        raise FileNotFoundError(f"{path} holds no saved model (neither config.json nor adapter_config.json)")
    if os.path.isfile(adapter_config):
        # A DialCLIP prompt adapter (the only PEFT adapters hf_dialret writes): its base CLIP comes first.
        from ..prompts import load_dialclip

        with open(adapter_config, encoding="utf-8") as handle:
            base_path = json.load(handle).get("base_model_name_or_path")
        if not base_path:
            raise ValueError(f"{adapter_config} does not name its base model (base_model_name_or_path)")
        model = load_dialclip(path)
        processor_source = processor_path or (path if _has_processor(path) else base_path)
    else:
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        processor_source = processor_path or path
    processor = _load_processor(processor_source)
    model.to(_resolve_device(device)).eval()
    return model, processor


def _load_processor(source: str) -> Any:
    try:
        return AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        first_error = error
    # DialCLIP's processor sits beside a plain CLIP checkpoint, whose config AutoProcessor maps to CLIPProcessor.
    try:
        from ..modeling.processing_dialclip import DialCLIPProcessor

        return DialCLIPProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError, ImportError):
        raise ValueError(
            f"cannot load the processor from {source} ({first_error}); save it with "
            "processor.save_pretrained(model_dir) or pass its directory explicitly"
        ) from first_error


def _has_processor(path: str) -> bool:
    return any(
        os.path.isfile(os.path.join(path, name))
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    )
