"""The transformers pipeline task ``"dialogue-response-retrieval"``, on top of :class:`ResponseIndex`.

```python
>>> import hf_dialret  # registers the task
>>> from transformers import pipeline
>>> retriever = pipeline("dialogue-response-retrieval", model="runs/mdr", index="runs/mdr-index", device="cpu")
>>> retriever(["I just got a puppy!", "Show me!"], top_k=3)
[{'id': 12, 'score': 0.71, 'modality': 'image', 'image': '/data/pool/puppy.jpg'}, ...]
```

A call with one dialogue (a string, or a list of turns: strings, turn dicts ``{"speaker", "text", "image"}`` or chat
messages ``{"role", "content"}``) returns its ranked hits; a call with a list of dialogues returns one list per
dialogue, encoded in batches.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoModel, AutoProcessor, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "dialogue-response-retrieval"


class _Dialogue:
    """Wraps one dialogue so the base ``Pipeline.__call__`` does not read its list of turns as a batch."""

    def __init__(self, turns: Any) -> None:
        self.turns = turns


def _is_single_dialogue(inputs: Any) -> bool:
    if isinstance(inputs, (str, _Dialogue)):
        return True
    # a list without nested lists is one dialogue (a bad turn in it is then reported as that turn, not as a dialogue)
    return isinstance(inputs, (list, tuple)) and bool(inputs) and not any(
        isinstance(t, (list, tuple, _Dialogue)) for t in inputs)


class DialogueResponseRetrievalPipeline(Pipeline):
    """Rank the responses of a :class:`~hf_dialret.retrieval.ResponseIndex` for a dialogue.

    Args:
        model: an hf_dialret retriever (or, through ``pipeline()``, a directory / Hub id that ``AutoModel`` loads).
        index (`ResponseIndex` or path): the candidate pool, or the directory it was saved to.
        processor: the model's ``DialogueRetrievalProcessor``; loaded from the model's directory when omitted.
        check_index (`bool`, defaults to `True`): verify that the index was built with this model's weights.
        precision (`str`, *optional*): `"auto"`, `"fp32"` or `"bf16"` for encoding the dialogues; defaults to the
            precision the index was built with (see `ResponseIndex`).
        top_k (`int`, defaults to 10): number of responses returned per dialogue.
        batch_size (`int`, defaults to 32): dialogues encoded at once when a list of dialogues is searched.
        modality (`str`, defaults to `"auto"`): `"auto"` (DR/SDR: predicted modality, MDR/DialCLIP: joint pool),
            `"both"`, `"text"` or `"image"`.

    Returns: per dialogue, a list of dicts ``{"id", "score", "modality", "text" | "image"}``, best first; ``image``
    is the image's path (or the PIL image for in-memory candidates).
    """

    _load_processor = None  # optional: we fall back to DialogueRetrievalProcessor.from_pretrained
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(
        self, *args: Any, index: Any = None, check_index: bool = True, precision: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        from .index import ResponseIndex  # lazy: keeps faiss out of `import hf_dialret`

        if index is None:
            raise ValueError(f'the "{TASK}" pipeline needs index=<ResponseIndex or directory saved by it>')
        processor = self.processor if self.processor is not None else self._load_own_processor()
        if isinstance(index, (str, os.PathLike)):
            index = ResponseIndex.load(index, self.model, processor, check_model=check_index)
        elif isinstance(index, ResponseIndex):
            index.bind(self.model, processor, check=check_index)
        else:
            raise TypeError(f"index must be a ResponseIndex or a directory, got {type(index).__name__}")
        if precision is not None:
            from ..inference import PRECISIONS

            if precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
            index.precision = precision
        self.processor, self.index = processor, index
        # pipeline(..., batch_size=N) sizes the index's batched encoding, not the base class's collation (see __call__)
        self._search_batch_size, self._batch_size = self._batch_size, None

    def _load_own_processor(self) -> Any:
        source = getattr(self.model, "name_or_path", None) or getattr(self.model.config, "_name_or_path", None)
        if not source:
            raise ValueError("pass processor=<DialogueRetrievalProcessor>: the model was not loaded from a directory")
        try:
            return AutoProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError):
            from ..modeling import DialogueRetrievalProcessor

            return DialogueRetrievalProcessor.from_pretrained(source)

    def _sanitize_parameters(
        self, top_k: int | None = None, modality: str | None = None, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected arguments for the {TASK} pipeline: {sorted(kwargs)}")
        forward: dict[str, Any] = {}
        if top_k is not None:
            if top_k <= 0:
                raise ValueError(f"top_k must be positive, got {top_k}")
            forward["top_k"] = top_k
        if modality is not None:
            forward["modality"] = modality
        return {}, forward, {}

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # batch_size is how many dialogues are encoded at once, by the index's own batched search; the base class's
        # batching would collate lists of turns, which it cannot, so streamed inputs go one dialogue at a time.
        batch_size = kwargs.pop("batch_size", None) or self._search_batch_size or 32
        kwargs.pop("num_workers", None)
        if _is_single_dialogue(inputs):
            return super().__call__(inputs if isinstance(inputs, _Dialogue) else _Dialogue(inputs), **kwargs)
        if isinstance(inputs, (list, tuple)):
            # One batched search instead of the base class's one-by-one loop (its collation wants tensors).
            _, forward, _ = self._sanitize_parameters(**kwargs)
            forward = {**self._forward_params, **forward}
            hits = self.index.search([self._turns(d) for d in inputs], forward.get("top_k", 10),
                                     modality=forward.get("modality", "auto"), batch_size=batch_size)
            return [self.postprocess(h) for h in hits]
        return super().__call__(inputs, **kwargs)  # datasets and generators: streamed one dialogue at a time

    @staticmethod
    def _turns(dialogue: Any) -> list[Any]:
        from .encoding import normalize_dialogue

        return normalize_dialogue(dialogue.turns if isinstance(dialogue, _Dialogue) else dialogue)

    def preprocess(self, inputs: Any) -> dict[str, Any]:
        return {"turns": self._turns(inputs)}

    def _forward(self, model_inputs: dict[str, Any], top_k: int = 10, modality: str = "auto") -> Any:
        return self.index.search([model_inputs["turns"]], top_k, modality=modality)[0]

    def postprocess(self, model_outputs: Any) -> list[dict[str, Any]]:
        return [hit.to_dict() for hit in model_outputs]


def register_pipeline() -> None:
    """Register the ``"dialogue-response-retrieval"`` task with transformers (idempotent, no overwrite warning)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is DialogueResponseRetrievalPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=DialogueResponseRetrievalPipeline, pt_model=AutoModel, type="multimodal"
    )
