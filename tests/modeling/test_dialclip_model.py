"""DialCLIPModel without an adapter: plain CLIP as a retriever, the retriever contract, backbones, the 77 limit."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, CLIPModel

from hf_dialret.modeling.configuration_dialclip import DialCLIPConfig
from hf_dialret.modeling.modeling_dialclip import DialCLIPModel
from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
from hf_dialret.prompts.tiny import save_tiny_clip, tiny_clip_tokenizer

WORDS = ["hello world", "a red ball", "blue square", "look at this photo", "nice dog"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), WORDS, hidden_size=32, projection_dim=16,
                          max_text_length=16)


@pytest.fixture(scope="module")
def processor(clip_dir):
    return DialCLIPProcessor.from_pretrained(clip_dir)


@pytest.fixture(scope="module")
def batch(processor):
    red, blue = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (30, 40), "blue")
    dialogues = [
        [{"speaker": "a", "text": "hello world"}, {"speaker": "b", "text": None, "image": red}, "a red ball"],
        ["look at this photo", {"speaker": "a", "text": "nice dog", "image": blue}],
        ["blue square"],
    ]
    return processor(dialogues, ["nice dog", blue, {"modality": "text", "text": "hello"}])


def test_processor_keys_and_context_layout(batch):
    assert batch["input_ids"].shape[0] == 3
    assert batch["context_text_batch_index"].tolist() == [0, 1]  # "hello world" (row 0), "look at this photo" (row 1)
    assert batch["context_image_batch_index"].tolist() == [0, 1]  # row 0's earlier photo, row 1's current photo
    assert batch["context_pixel_values"].shape == (2, 3, 32, 32)
    assert batch["response_modality"].tolist() == [0, 1, 0]
    assert batch["response_input_ids"].shape[0] == 2 and batch["response_pixel_values"].shape[0] == 1


def test_processor_truncates_to_the_position_limit_keeping_eos(processor):
    long_turn = " ".join(["hello"] * 40)
    out = processor([[long_turn, long_turn]], [long_turn])
    eos = processor.tokenizer.eos_token_id
    for key in ("input_ids", "context_input_ids", "response_input_ids"):
        assert out[key].shape[1] == 16
        assert out[key][0, -1].item() == eos  # CLIP pools at <|endoftext|>: truncation must keep it
    with pytest.raises(ValueError, match="77"):
        DialCLIPProcessor(processor.image_processor, processor.tokenizer, max_text_length=78)


def test_plain_model_equals_clip_and_follows_the_contract(clip_dir, batch):
    model = DialCLIPModel.from_clip(str(clip_dir)).eval()
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        out = model(**batch)
        text = clip.get_text_features(input_ids=batch["input_ids"],
                                      attention_mask=batch["attention_mask"]).pooler_output
        image = clip.get_image_features(pixel_values=batch["response_pixel_values"]).pooler_output
    assert out.context_embeds.shape == (3, 2, 16) and out.response_embeds.shape == (3, 16)
    assert out.loss is not None and out.logits.shape == (3, 3)  # loss in eval mode too (Trainer contract)
    assert torch.equal(out.context_embeds[:, 0], F.normalize(text, dim=-1))
    assert torch.equal(out.context_embeds[:, 1], out.context_embeds[:, 0])  # no experts: one CLIP query
    assert torch.equal(out.response_embeds[1], F.normalize(image, dim=-1)[0])  # batch order: text, image, text
    with torch.no_grad():
        alone = model.encode_responses(batch["response_input_ids"], batch["response_attention_mask"])
        text_query = model.encode_context(batch["input_ids"], batch["attention_mask"], modality="text")
    assert torch.equal(alone, out.response_embeds[[0, 2]])
    assert torch.equal(text_query, out.context_embeds[:, 0])
    assert model.joint_response_pool is True and model.name_or_path == str(clip_dir)


def test_loss_matches_shared_retrieval_loss(clip_dir, batch):
    from hf_dialret.modeling.retrieval_loss import dialogue_retrieval_loss

    model = DialCLIPModel.from_clip(str(clip_dir)).eval()
    with torch.no_grad():
        out = model(**batch)
        expected, _ = dialogue_retrieval_loss(out.context_embeds, batch["response_modality"], out.response_embeds,
                                              batch["response_modality"], model.logit_scale, joint_pool=True)
        loss = model.compute_loss(out.context_embeds, out.response_embeds, batch["response_modality"])
    assert torch.allclose(out.loss, expected) and torch.allclose(loss, expected)


def test_position_limit_is_a_clear_error(clip_dir):
    model = DialCLIPModel.from_clip(str(clip_dir))
    too_long = torch.ones(1, 17, dtype=torch.long)
    with pytest.raises(ValueError, match="only 16.*DialCLIPProcessor"):
        model.encode_context(too_long)


def test_save_load_roundtrip_and_auto_classes(clip_dir, batch, tmp_path):
    import hf_dialret  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModel

    model = DialCLIPModel.from_clip(str(clip_dir)).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dialclip"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), DialCLIPConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DialCLIPModel)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).context_embeds, model(**batch).context_embeds)
    # from_pretrained also wraps a plain CLIP checkpoint (what a DialCLIP adapter names as its base)
    wrapped = DialCLIPModel.from_pretrained(str(clip_dir))
    assert isinstance(wrapped, DialCLIPModel) and wrapped.config.clip_backbone == str(clip_dir)
    # dtype= reaches both towers, not only CLIP's projections (transformers passes it one config level down)
    half = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        embeds = half(**batch).context_embeds
    assert embeds.dtype == torch.bfloat16
    torch.testing.assert_close(embeds.float(), model(**batch).context_embeds, atol=0.05, rtol=0.05)


def test_tiny_tokenizer_has_whole_words_and_no_unknowns():
    tok = tiny_clip_tokenizer(["Red ball", "square-ish"])
    tokens = tok.convert_ids_to_tokens(tok("red ball square ish").input_ids)[1:-1]
    assert tokens == ["red</w>", "ball</w>", "square</w>", "ish</w>"]
    ids = tok("zebra 42 ?!").input_ids
    assert all(i not in (tok.bos_token_id, tok.eos_token_id) for i in ids[1:-1])  # CLIP's unk is <|endoftext|>
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "zebra42?!"
