"""Serving: a FAISS candidate index (:class:`ResponseIndex`) and the ``"dialogue-response-retrieval"`` pipeline.

The index classes are imported on first use, so ``import hf_dialret`` (which registers the pipeline task) does not
load FAISS.
"""

from __future__ import annotations

import importlib
from typing import Any

from .pipeline import TASK, DialogueResponseRetrievalPipeline, register_pipeline

_LAZY = {
    "ResponseIndex": "index",
    "RetrievalHit": "candidates",
    "Candidate": "candidates",
}

__all__ = ["TASK", "Candidate", "DialogueResponseRetrievalPipeline", "ResponseIndex", "RetrievalHit",
           "register_pipeline"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
    except ImportError as error:
        if "faiss" in str(error):
            raise ImportError("hf_dialret.retrieval needs FAISS: pip install faiss-cpu (or faiss-gpu)") from error
        raise
    return getattr(module, name)
