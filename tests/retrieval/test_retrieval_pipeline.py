"""The "dialogue-response-retrieval" transformers pipeline, registered by `import hf_dialret`."""

from __future__ import annotations

import numpy as np
import pytest
from retrieval_helpers import DIALOGUES, TEXTS
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import hf_dialret  # noqa: F401 - registers the task
from hf_dialret.retrieval import DialogueResponseRetrievalPipeline, ResponseIndex


@pytest.fixture(scope="module")
def retriever(mdr_dir, mdr_index_dir):
    return pipeline("dialogue-response-retrieval", model=mdr_dir, index=mdr_index_dir, device="cpu")


def test_task_is_registered_on_import():
    assert "dialogue-response-retrieval" in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.supported_tasks["dialogue-response-retrieval"]["impl"] is DialogueResponseRetrievalPipeline


def test_pipeline_returns_the_index_top_k(retriever, mdr_index_dir):
    assert isinstance(retriever, DialogueResponseRetrievalPipeline)
    hits = retriever(DIALOGUES[0], top_k=3)
    assert len(hits) == 3 and all(set(h) == {"id", "score", "modality", h["modality"]} for h in hits)
    expected = retriever.index.search([DIALOGUES[0]], k=3)[0]
    assert [h["id"] for h in hits] == [h.id for h in expected]
    assert all(h["text"] == TEXTS[h["id"]] for h in hits if h["modality"] == "text")
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(retriever("just one turn")) == 8  # default top_k=10, pool of 8


def _without_scores(hits: list[dict]) -> list[dict]:
    return [{key: value for key, value in hit.items() if key != "score"} for hit in hits]


def test_pipeline_batches_and_accepts_chat_messages(retriever):
    many = retriever(DIALOGUES, top_k=2)
    assert len(many) == len(DIALOGUES) and all(len(hits) == 2 for hits in many)
    # a batch pads its dialogues to the longest, which moves a score in the 7th digit (BLAS/SDPA on padded rows)
    alone = retriever(DIALOGUES[0], top_k=2)
    assert _without_scores(many[0]) == _without_scores(alone)
    assert [h["score"] for h in many[0]] == pytest.approx([h["score"] for h in alone], abs=1e-5)
    chat = [{"role": "user", "content": "look at my new dog"}, {"role": "assistant", "content": "cute"}]
    turns = [{"speaker": "user", "text": "look at my new dog"}, {"speaker": "assistant", "text": "cute"}]
    assert retriever(chat, top_k=3) == retriever(turns, top_k=3)  # role -> speaker, content -> text
    assert {h["modality"] for h in retriever(DIALOGUES[0], modality="image")} == {"image"}
    # batch_size sizes the batched search, for a list and for a stream (a generator goes one dialogue at a time)
    assert _without_scores(retriever(DIALOGUES, top_k=2, batch_size=1)[1]) == _without_scores(many[1])
    streamed = list(retriever((d for d in DIALOGUES), top_k=2, batch_size=2))
    assert [_without_scores(hits) for hits in streamed] == [_without_scores(hits) for hits in many]


@pytest.mark.parametrize("dialogue, error, message", [
    (["hi", 3], TypeError, "turn 1: expected a str or a dict"),
    ([{"speaker": "A", "text": 5}], TypeError, "turn 0: text must be a str or None"),
    ("", ValueError, "at least one turn with text or an image"),
    ([{"speaker": "A"}, "  "], ValueError, "at least one turn with text or an image"),
])
def test_bad_dialogues_are_named_clearly(retriever, dialogue, error, message):
    with pytest.raises(error, match=message):
        retriever(dialogue)


def test_pipeline_errors(mdr_dir, dr_dir, mdr_index_dir, mdr_model, tiny_processor):
    with pytest.raises(ValueError, match="needs index="):
        pipeline("dialogue-response-retrieval", model=mdr_dir, device="cpu")
    with pytest.raises(ValueError, match="model/index mismatch"):
        pipeline("dialogue-response-retrieval", model=dr_dir, index=mdr_index_dir, device="cpu")
    in_memory = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS, show_progress=False)
    direct = pipeline("dialogue-response-retrieval", model=mdr_model, processor=tiny_processor, index=in_memory,
                      device="cpu")
    assert direct(DIALOGUES[1], top_k=1)[0]["modality"] == "text"
    with pytest.raises(TypeError, match="unexpected arguments"):
        direct(DIALOGUES[1], k=1)


def test_pipeline_precision_overrides_the_index(mdr_dir, mdr_index_dir, mdr_model, tiny_processor):
    """precision= reaches the index (fp32: the index's own scores exactly); a bad value is refused."""
    exact = pipeline("dialogue-response-retrieval", model=mdr_dir, index=mdr_index_dir, device="cpu", precision="fp32")
    assert exact.index.precision == "fp32"
    reference = ResponseIndex.load(mdr_index_dir, mdr_model, tiny_processor, precision="fp32")
    want = reference.search([DIALOGUES[0]], k=3)[0]
    got = exact(DIALOGUES[0], top_k=3)
    assert [h["id"] for h in got] == [h.id for h in want]
    np.testing.assert_allclose([h["score"] for h in got], [h.score for h in want], atol=1e-6)
    with pytest.raises(ValueError, match="precision must be one of"):
        pipeline("dialogue-response-retrieval", model=mdr_dir, index=mdr_index_dir, device="cpu", precision="fp8")
