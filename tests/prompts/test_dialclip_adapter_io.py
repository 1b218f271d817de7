"""Saving and loading DialCLIP adapters: PeftModel, another adapter name, AutoPeftModel, transformers' load_adapter."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from peft import AutoPeftModel, PeftModel, get_peft_model

from hf_dialret.modeling.modeling_dialclip import DialCLIPModel
from hf_dialret.prompts import DialCLIPPromptConfig, load_dialclip


def _outputs(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return torch.cat([out.context_embeds.flatten(1), out.response_embeds], dim=1)


@pytest.fixture(scope="module")
def saved(clip_dir, batch, tmp_path_factory):
    """A trained-looking adapter (every parameter perturbed, experts non-zero) saved to disk, and its outputs."""
    with warnings.catch_warnings():  # module-scoped: the autouse filter of conftest.py does not cover it
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig())
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    peft_model.eval()
    path = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(path)
    return path, _outputs(peft_model, batch)


def test_adapter_files_name_the_base_clip(saved, clip_dir):
    path, _ = saved
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["peft_type"] == "DIALCLIP"
    assert config["base_model_name_or_path"] == str(clip_dir)
    assert (path / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("adapter_name", ["default", "other"])
def test_peft_model_from_pretrained_gives_identical_outputs(saved, clip_dir, batch, adapter_name):
    path, expected = saved
    loaded = PeftModel.from_pretrained(DialCLIPModel.from_clip(str(clip_dir)), path, adapter_name=adapter_name)
    assert loaded.active_adapters == [adapter_name]
    assert torch.equal(_outputs(loaded.eval(), batch), expected)


def test_load_as_trainable_under_another_name(saved, clip_dir, batch):
    path, expected = saved
    loaded = PeftModel.from_pretrained(DialCLIPModel.from_clip(str(clip_dir)), path, adapter_name="other",
                                       is_trainable=True)
    names = [n for n, p in loaded.named_parameters() if p.requires_grad]
    assert names and all(".other" in n for n in names)
    assert torch.equal(_outputs(loaded.eval(), batch), expected)


def test_load_dialclip_and_auto_peft_model(saved, batch):
    path, expected = saved
    assert torch.equal(_outputs(load_dialclip(path).eval(), batch), expected)
    auto = AutoPeftModel.from_pretrained(path, import_allowlist=["hf_dialret"])
    assert isinstance(auto.get_base_model(), DialCLIPModel)
    assert torch.equal(_outputs(auto.eval(), batch), expected)


def test_transformers_load_adapter(saved, clip_dir, batch):
    path, expected = saved
    model = DialCLIPModel.from_clip(str(clip_dir))
    model.load_adapter(str(path), adapter_name="dialog")
    assert torch.equal(_outputs(model.eval(), batch), expected)
