"""Contrastive pretraining of the tiny CLIP: it learns (loss, held-out caption retrieval), loads, and is cached."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel

from hf_dialret.data.synthetic_render import is_held_out, render_picture
from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
from hf_dialret.prompts import pretrain_tiny as pretraining
from hf_dialret.prompts import read_pretraining_record, tiny_clip_prompt_config
from hf_dialret.prompts.pretrain_tiny import (
    RECORD_FILE,
    all_pictures,
    caption_retrieval,
    pretrain_tiny_clip,
    training_pictures,
)

# 1 layer, hidden 32: a few seconds of pretraining on one core, enough to beat chance clearly.
SMALL = dict(hidden_size=32, num_layers=1, num_heads=2, projection_dim=32, batch_size=64, picture_copies=2,
             learning_rate=5e-3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    output = pretrain_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", ["hello world"], steps=40,
                                cache_dir=cache, progress=False, **SMALL)
    return output, cache


def test_pretraining_lowers_the_loss_and_composes_held_out_pairs(pretrained) -> None:
    output, _ = pretrained
    record = read_pretraining_record(output)
    assert record["first_loss"] > 4.0 and record["last_loss"] < record["first_loss"] - 0.4  # ln(64) = 4.16 at start
    # Captions of colour-shape pairs that no pretraining picture showed, ranked against those 144 pictures.
    model, processor = CLIPModel.from_pretrained(output).eval(), DialCLIPProcessor.from_pretrained(output)
    held_out = [p for p in all_pictures() if is_held_out(p.colour, p.shape)]
    report = caption_retrieval(model, processor, held_out)
    chance = 5 / len(held_out)
    assert report["overall"]["recall@5"] >= 2.5 * chance


def test_output_loads_with_clip_and_dialclip_classes(pretrained) -> None:
    output, _ = pretrained
    model = CLIPModel.from_pretrained(output)
    processor = DialCLIPProcessor.from_pretrained(output)
    assert model.config.text_config.hidden_size == 32 and model.config.vision_config.image_size == 32
    # Caption words and the given vocabulary are whole tokens (no character pieces); pictures come out at 32 px.
    assert processor.tokenizer.tokenize("two red stars on a sand background hello") == [
        "two</w>", "red</w>", "stars</w>", "on</w>", "a</w>", "sand</w>", "background</w>", "hello</w>"]
    batch = processor(responses=["three blue circles", render_picture(all_pictures()[0])])  # a 48 px picture
    assert batch["response_pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(input_ids=batch["response_input_ids"], attention_mask=batch["response_attention_mask"],
                    pixel_values=batch["response_pixel_values"])
    assert out.logits_per_text.shape == (1, 1) and torch.isfinite(out.logits_per_text).all()


def test_the_cache_is_reused_and_keyed_by_the_settings(pretrained, tmp_path, monkeypatch) -> None:
    output, cache = pretrained

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tiny CLIP should have been reused")

    monkeypatch.setattr(pretraining, "_train_and_save", no_training)
    again = pretrain_tiny_clip(tmp_path / "again", ["hello world"], steps=40, cache_dir=cache, progress=False, **SMALL)
    assert read_pretraining_record(again) == read_pretraining_record(output)
    assert (again / "model.safetensors").read_bytes() == (output / "model.safetensors").read_bytes()
    # The same output dir with the same settings is kept as it is (not even copied).
    before = (output / RECORD_FILE).stat().st_mtime_ns
    assert pretrain_tiny_clip(output, ["hello world"], steps=40, cache_dir=cache, progress=False, **SMALL) == output
    assert (output / RECORD_FILE).stat().st_mtime_ns == before
    # Another setting (or vocabulary) is another cache entry: it would be trained.
    with pytest.raises(AssertionError, match="should have been reused"):
        pretrain_tiny_clip(tmp_path / "other", ["hello world"], steps=41, cache_dir=cache, progress=False, **SMALL)
    with pytest.raises(AssertionError, match="should have been reused"):
        pretrain_tiny_clip(tmp_path / "words", ["goodbye"], steps=40, cache_dir=cache, progress=False, **SMALL)
    assert len([p for p in (cache / "tiny-clip").iterdir() if not p.name.startswith(".")]) == 1


def test_cache_root_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(pretraining.CACHE_ENV, raising=False)
    assert pretraining.cache_root().parts[-2:] == (".cache", "hf_dialret")
    monkeypatch.setenv(pretraining.CACHE_ENV, str(tmp_path / "env-cache"))
    assert pretraining.cache_root() == tmp_path / "env-cache"
    assert pretraining.cache_root(tmp_path / "given") == tmp_path / "given"


def test_training_pictures_skip_held_out_pairs_and_settings_are_checked() -> None:
    pictures = training_pictures()
    assert len(pictures) == 432 and not any(is_held_out(p.colour, p.shape) for p in pictures)
    assert len(all_pictures()) == 576
    with pytest.raises(ValueError, match="batch_size"):
        pretraining.TinyClipPretrainingArguments(batch_size=1)
    with pytest.raises(TypeError):
        pretrain_tiny_clip("unused", [], no_such_setting=1)


def test_an_unrelated_directory_is_never_replaced(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="does not hold a tiny CLIP"):
        pretrain_tiny_clip(tmp_path, [], steps=1, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_tiny_clip_prompt_config_inserts_context_prompts_at_layer_one() -> None:
    config = tiny_clip_prompt_config()
    assert config.context_prompt_layer == 1 and config.context_prompt_length == 16 and config.domain_prompt_length == 4
    assert tiny_clip_prompt_config(expert_rank=2).expert_rank == 2
