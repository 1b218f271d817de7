"""DialogueRetrievalProcessor: flattening, oldest-first truncation, placeholders <-> images, responses."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hf_dialret import DialogueRetrievalProcessor


def image(value: int, size: int = 48, mode: str = "RGB") -> Image.Image:
    """A flat image whose pixel value identifies it after processing."""
    return Image.new(mode, (size, size), value if mode == "L" else (value, value, value))


def decode(processor, ids) -> str:
    return processor.tokenizer.decode([i for i in ids.tolist() if i != processor.tokenizer.pad_token_id])


def test_dialogue_is_flattened_with_speakers_separators_and_placeholders(tiny_processor):
    dialogue = [{"speaker": "A", "text": "look at my dog", "image": image(10)}, {"speaker": "B", "text": "cute"}, "wow"]
    out = tiny_processor(dialogue)
    assert decode(tiny_processor, out["input_ids"][0]) == "[CLS] a : [IMG] look at my dog [SEP] b : cute [SEP] wow [SEP]"
    assert out["attention_mask"].sum().item() == out["input_ids"].shape[1]
    assert out["context_pixel_values"].shape == (1, 3, 48, 48)
    assert set(out.keys()) == {"input_ids", "attention_mask", "context_pixel_values"}


def test_truncation_drops_the_oldest_turns_first_and_their_images(tiny_processor):
    dialogue = [
        {"speaker": "A", "text": "my red ball", "image": image(10)},   # oldest: must go
        {"speaker": "B", "text": "nice", "image": image(20)},          # cut from its left: image goes
        {"speaker": "A", "text": "do you like it", "image": image(30)},
        {"speaker": "B", "text": "yes i love the blue box"},
    ]
    full = tiny_processor(dialogue, max_context_length=64)
    assert (full["input_ids"] == tiny_processor.image_token_id).sum() == 3
    out = tiny_processor(dialogue, max_context_length=20)
    text = decode(tiny_processor, out["input_ids"][0])
    assert out["input_ids"].shape[1] == 20
    assert text == "[CLS] nice [SEP] a : [IMG] do you like it [SEP] b : yes i love the blue box [SEP]", text
    # One placeholder left, so one image, and it is the newest one (pixel value 30, not 10 or 20).
    assert (out["input_ids"] == tiny_processor.image_token_id).sum() == 1
    assert out["context_pixel_values"].shape[0] == 1
    expected = tiny_processor.image_processor([image(30)], return_tensors="pt")["pixel_values"]
    assert torch.allclose(out["context_pixel_values"], expected)
    # A turn cut just after its placeholder keeps its image; one token less and it is gone.
    kept = tiny_processor(dialogue, max_context_length=16)
    assert decode(tiny_processor, kept["input_ids"][0]).startswith("[CLS] [IMG] do you")
    assert kept["context_pixel_values"].shape[0] == 1
    gone = tiny_processor(dialogue, max_context_length=15)
    assert decode(tiny_processor, gone["input_ids"][0]).startswith("[CLS] do you")
    assert "context_pixel_values" not in gone


def test_placeholders_and_images_stay_consistent_across_a_batch(tiny_processor):
    batch = [
        [{"speaker": "A", "text": "a", "image": image(1)}, {"speaker": "B", "text": "b", "image": image(2)}],
        [{"speaker": "A", "text": "no image here"}],
        [{"speaker": "A", "text": "photo", "image": image(3, mode="L")}],  # grayscale is converted to RGB
    ]
    for length in (4, 6, 9, 32):
        out = tiny_processor(batch, max_context_length=length)
        placeholders = (out["input_ids"] == tiny_processor.image_token_id).sum().item()
        images = out["context_pixel_values"].shape[0] if "context_pixel_values" in out else 0
        assert placeholders == images, length
        assert out["input_ids"].shape[1] <= length
        assert (out["input_ids"][:, 0] == tiny_processor.tokenizer.cls_token_id).all()
    out = tiny_processor(batch)
    # Row-major order of the placeholders: dialogue 0's two images, then dialogue 2's.
    means = out["context_pixel_values"].mean(dim=(1, 2, 3))
    assert means[0] < means[1] < means[2]
    assert out["attention_mask"][2].tolist() == [1] * 6 + [0] * 5  # "[CLS] a : [IMG] photo [SEP]", right-padded


def test_literal_image_token_in_text_is_not_a_placeholder(tiny_processor):
    out = tiny_processor([[{"speaker": "A", "text": "the [IMG] box"}]])
    assert (out["input_ids"] == tiny_processor.image_token_id).sum() == 0
    # nor in a speaker name: placeholders must stay one to one with context_pixel_values
    out = tiny_processor([[{"speaker": "[IMG]", "text": "hi [IMG]"}, {"speaker": "B", "text": "nice", "image": image(5)}]])
    assert (out["input_ids"] == tiny_processor.image_token_id).sum() == 1 == out["context_pixel_values"].shape[0]


def test_a_newest_turn_over_the_limit_keeps_its_speaker_and_image(tiny_processor):
    dialogue = [{"speaker": "A", "text": "my red ball"},
                {"speaker": "B", "text": "yes i love the blue box do you like it", "image": image(7)}]
    out = tiny_processor(dialogue, max_context_length=9)
    assert decode(tiny_processor, out["input_ids"][0]) == "[CLS] b : [IMG] yes i love the [SEP]"
    assert out["context_pixel_values"].shape[0] == 1  # the image the response answers is still there


def test_a_response_without_text_or_image_says_so(tiny_processor):
    with pytest.raises(ValueError, match="needs a `text` or an `image`"):
        tiny_processor([["hello"]], [{"text": None, "image": None}])


def test_responses_of_both_modalities_in_batch_order(tiny_processor):
    responses = ["wow nice", image(5), {"modality": "image", "image": image(6)}, {"text": "sure", "modality": "text"}]
    out = tiny_processor(responses=responses)
    assert out["response_modality"].tolist() == [0, 1, 1, 0]
    assert out["response_input_ids"].shape[0] == 2 and out["response_pixel_values"].shape[0] == 2
    assert decode(tiny_processor, out["response_input_ids"][1]) == "[CLS] sure [SEP]"
    long = tiny_processor(responses=["a b c d e f g h i j k"])
    assert long["response_input_ids"].shape[1] == tiny_processor.max_response_length
    with pytest.raises(ValueError, match="needs an `image` value"):
        tiny_processor(responses=[{"modality": "image", "image": None}])
    with pytest.raises(TypeError, match="must be a dict, a str or a PIL image"):
        tiny_processor(responses=[3])


def test_image_token_is_added_when_missing(tiny_backbones):
    from transformers import AutoImageProcessor, AutoTokenizer

    text_dir, vision_dir = tiny_backbones
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    processor = DialogueRetrievalProcessor(AutoImageProcessor.from_pretrained(vision_dir), tokenizer, image_token="<pic>")
    assert processor.image_token_id == len(tokenizer) - 1 and tokenizer.tokenize("a <pic>")[-1] == "<pic>"


def test_dialogue_tokens_match_the_tokenizer_after_a_truncating_response_call(tiny_processor):
    # Dialogues go through the fast tokenizer's Rust backend, which keeps the truncation / padding of the last
    # `tokenizer(...)` call; the responses' call truncates to max_response_length, which must not leak into turns.
    long_turn = " ".join(["my", "red", "ball", "is", "nice"] * 12)  # 60 tokens, far over the responses' 4
    tiny_processor(responses=["a short reply", "a longer reply with more words in it"], max_response_length=4)
    turns = [{"speaker": "A", "text": long_turn}, {"speaker": "B", "text": long_turn}, {"speaker": "A", "text": "ok"}]
    out = tiny_processor([turns], max_context_length=256)
    tok = tiny_processor.tokenizer
    expected = [tok.cls_token_id]
    for turn in turns:
        expected += tok(f"{turn['speaker']}:", add_special_tokens=False)["input_ids"]
        expected += tok(turn["text"], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    assert out["input_ids"][0].tolist() == expected and len(expected) > 120


def test_tokenizers_without_a_rust_backend_give_the_same_dialogue_tokens(tiny_processor, monkeypatch):
    dialogue = [{"speaker": "A", "text": "Look at my DOG, it is cute!"}, {"speaker": "B", "text": "wow [IMG] nice"},
                {"speaker": "A", "text": "Look at my DOG, it is cute!"}]
    fast = tiny_processor(dialogue)["input_ids"]
    calls = []
    original = type(tiny_processor.tokenizer).__call__

    def python_tokenizer_call(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    # A slow (Python) tokenizer: no backend to call, so the processor goes through `tokenizer(...)`.
    monkeypatch.setattr(type(tiny_processor.tokenizer), "is_fast", property(lambda self: False))
    monkeypatch.setattr(type(tiny_processor.tokenizer), "__call__", python_tokenizer_call)
    assert torch.equal(tiny_processor(dialogue)["input_ids"], fast)
    # one call, for the distinct strings only: two speaker marks and two texts
    assert calls == [["A:", "Look at my DOG, it is cute!", "B:", "wow [IMG] nice"]]
