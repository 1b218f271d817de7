"""Load a saved retriever and its processor from a directory or Hub id, for serving (CLI, examples).

Full models load with ``AutoModel`` (hf_dialret registers its classes on import); PEFT adapters (DialCLIP), in a
directory or a Hub repository, load their base model first, as named in ``adapter_config.json``, then the adapter on
top.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from transformers import AutoModel, AutoProcessor
from transformers.utils import find_adapter_config_file


def _resolve_device(device: str | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_retriever(path: str, device: str | None = None, processor_path: str | None = None) -> tuple[Any, Any]:
    """Return ``(model, processor)`` in eval mode on ``device`` ("auto": CUDA when available)."""
    if os.path.isdir(path):
        adapter_config = os.path.join(path, "adapter_config.json")
        adapter_config = adapter_config if os.path.isfile(adapter_config) else None
        if adapter_config is None and not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path} holds no saved model (neither config.json nor adapter_config.json)")
    else:  # a Hub id: an adapter repository has adapter_config.json (looked up online or in the offline cache)
        adapter_config = find_adapter_config_file(path)
    if adapter_config is not None:
        # A DialCLIP prompt adapter (the only PEFT adapters hf_dialret writes): its base CLIP comes first.
        from ..prompts import load_dialclip

        with open(adapter_config, encoding="utf-8") as handle:
            base_path = json.load(handle).get("base_model_name_or_path")
        if not base_path:
            raise ValueError(f"{adapter_config} does not name its base model (base_model_name_or_path)")
        model = load_dialclip(path)
        # hf_dialret saves (and pushes) the processor beside the adapter; an adapter saved without one uses its base's
        local_without = os.path.isdir(path) and not _has_processor(path)
        sources = [processor_path] if processor_path else [base_path] if local_without else [path, base_path]
    else:
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        sources = [processor_path or path]
    processor = _load_processor(sources)
    model.to(_resolve_device(device)).eval()
    return model, processor


def _load_processor(sources: list[str]) -> Any:
    """The processor from the first of ``sources`` that has one."""
    first_error: Exception | None = None
    for source in sources:
        try:
            return AutoProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError) as error:
            first_error = first_error or error
        # DialCLIP's processor sits beside a plain CLIP checkpoint, whose config AutoProcessor maps to CLIPProcessor.
        try:
            from ..modeling.processing_dialclip import DialCLIPProcessor

            return DialCLIPProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError, ImportError):
            pass
    raise ValueError(
        f"cannot load the processor from {' or '.join(sources)} ({first_error}); save it with "
        "processor.save_pretrained(model_dir) or pass its directory explicitly"
    ) from first_error


def _has_processor(path: str) -> bool:
    return any(
        os.path.isfile(os.path.join(path, name))
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    )
