"""DialogueRetrievalCollator against the real DialogueRetrievalProcessor (tiny backbones)."""

from __future__ import annotations

import io

import pytest
import torch
from conftest import MMDIALOG_ROOT, PHOTOCHAT_SAMPLE
from PIL import Image

from hf_dialret.data import (
    DialogueRetrievalCollator, MissingImageError, load_mmdialog, load_photochat, make_synthetic_corpus,
    response_id_hash)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_corpus(64, seed=1, num_validation_dialogues=0, num_test_dialogues=0)["train"]


def test_response_id_hash_is_stable_and_63_bit():
    assert response_id_hash("train/3b4a85bac6ead3c8") == response_id_hash("train/3b4a85bac6ead3c8")
    assert response_id_hash("hello") == 2861735919082615933  # BLAKE2b-64 masked to 63 bits: fixed forever
    assert all(0 <= response_id_hash(str(i)) < 2**63 for i in range(1000))
    assert len({response_id_hash(str(i)) for i in range(1000)}) == 1000


def test_batch_keys_shapes_ids_and_labels(tiny_processor, synthetic):
    examples = [synthetic[i] for i in range(32)]
    examples.append(examples[0])  # a duplicate response must get the same id
    batch = DialogueRetrievalCollator(tiny_processor)(examples)
    modalities = [int(e["response"]["modality"] == "image") for e in examples]
    n_images = sum(modalities)
    assert batch["labels"].tolist() == modalities == batch["response_modality"].tolist()
    assert batch["response_ids"].dtype == torch.long
    assert batch["response_ids"].tolist() == [response_id_hash(e["response"]["id"]) for e in examples]
    assert batch["response_ids"][0] == batch["response_ids"][-1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 33
    assert batch["response_pixel_values"].shape == (n_images, 3, 48, 48)
    assert batch["response_input_ids"].shape[0] == 33 - n_images
    assert "context_pixel_values" not in batch  # synthetic contexts are text only
    # dynamic padding: the longest dialogue of the batch sets the width
    assert batch["attention_mask"].sum(1).max() == batch["input_ids"].shape[1]


def test_context_truncation_and_undecoded_images(tiny_processor, synthetic):
    examples = [synthetic[i] for i in range(8)]
    short = DialogueRetrievalCollator(tiny_processor, max_context_length=16)(examples)
    assert short["input_ids"].shape[1] <= 16
    # the newest turn survives truncation (it carries the request)
    last_turn = tiny_processor.tokenizer(examples[0]["context"][-1]["text"], add_special_tokens=False)["input_ids"]
    kept = short["input_ids"][0][short["attention_mask"][0].bool()].tolist()
    assert kept[-1 - len(last_turn[-3:]):-1] == last_turn[-3:]
    raw = synthetic.cast_column("response", {**synthetic.features["response"]})
    raw = raw.with_format("arrow")[:8].to_pylist()  # images as {"bytes", "path"}: decoded by the collator
    batch = DialogueRetrievalCollator(tiny_processor)(raw)
    reference = DialogueRetrievalCollator(tiny_processor)(examples)
    assert torch.equal(batch["response_pixel_values"], reference["response_pixel_values"])


def test_context_images_from_mmdialog(tiny_processor):
    rows = list(load_mmdialog(MMDIALOG_ROOT, "train"))
    batch = DialogueRetrievalCollator(tiny_processor)(rows)
    n_context_images = sum(t["image"] is not None for r in rows for t in r["context"])
    assert batch["context_pixel_values"].shape[0] == n_context_images
    assert (batch["input_ids"] == tiny_processor.image_token_id).sum() == n_context_images
    assert batch["labels"].tolist() == [int(r["response"]["modality"] == "image") for r in rows]


def test_missing_photos_explain_how_to_get_them(tiny_processor):
    ds = load_photochat(PHOTOCHAT_SAMPLE, "test")
    collator = DialogueRetrievalCollator(tiny_processor)
    image_row = next(r for r in ds if r["response"]["modality"] == "image")
    with pytest.raises(MissingImageError, match="Open Images") as info:
        collator([image_row])
    assert info.value.field == "response.image"
    after_photo = next(r for r in ds if any(t["text"] is None for t in r["context"]))
    with pytest.raises(MissingImageError, match="image_dir"):
        collator([after_photo])
    before_photo = ds[0]
    assert collator([before_photo])["labels"].tolist() == [0]


def test_bad_modality_and_image_bytes(tiny_processor):
    collator = DialogueRetrievalCollator(tiny_processor)
    with pytest.raises(ValueError, match="modality"):
        collator([{"dialogue_id": "x", "context": [{"speaker": "A", "text": "hi", "image": None}],
                   "response": {"modality": "video", "text": None, "image": None, "id": "v"}}])
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), "blue").save(buffer, format="PNG")
    batch = collator([{"dialogue_id": "x", "context": [{"speaker": "A", "text": "show me", "image": None}],
                       "response": {"modality": "image", "text": None, "image": {"bytes": buffer.getvalue(),
                                                                                  "path": None}, "id": "blue"}}])
    assert batch["response_pixel_values"].shape[0] == 1
