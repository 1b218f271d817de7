"""Tiny checkpoints for the model-card and push tests: an MDR / DR model with processor, a DialCLIP adapter."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hub_helpers import EVAL_REPORT


@pytest.fixture(autouse=True)
def _quiet_peft_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@pytest.fixture(scope="session")
def saved_mdr(tmp_path_factory, tiny_config, tiny_processor) -> str:
    """A trained-looking MDR directory: weights, processor, eval_results.json and trainer_state.json."""
    from hf_dialret import MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel

    torch.manual_seed(0)
    model = MultimodalDualRetrieverModel(tiny_config(MultimodalDualRetrieverConfig))
    path = tmp_path_factory.mktemp("mdr_run")
    model.save_pretrained(path)
    tiny_processor.save_pretrained(path)
    (path / "eval_results.json").write_text(json.dumps({"dataset": "synthetic", "split": "test",
                                                        "results": EVAL_REPORT}))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 300, "num_train_epochs": 3,
                                                         "train_batch_size": 32, "log_history": []}))
    return str(path)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    from hf_dialret.prompts import save_tiny_clip

    words = ["hello world", "a red ball", "blue square", "look at this photo", "nice dog"]
    return str(save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), words, hidden_size=32, projection_dim=16,
                              max_text_length=16))


@pytest.fixture(scope="session")
def saved_adapter(tmp_path_factory, clip_dir) -> str:
    """A DialCLIP adapter saved with PeftModel.save_pretrained (which writes its own README), its base a local CLIP."""
    from hf_dialret.prompts import build_dialclip_for_training

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dialclip_adapter")
    build_dialclip_for_training(clip_dir).save_pretrained(path)
    return str(path)
