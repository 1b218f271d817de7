"""Shared tiny-CLIP fixtures for the DialCLIP adapter tests (CPU, a few milliseconds per forward)."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from hf_dialret.modeling.modeling_dialclip import DialCLIPModel
from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
from hf_dialret.prompts.tiny import save_tiny_clip

WORDS = ["hello world", "a red ball", "blue square", "look at this photo", "nice dog", "green tree"]


@pytest.fixture(autouse=True)
def _quiet_peft_warnings():
    # PeftModel reads the deprecated `is_gradient_checkpointing` (a transformers v5 FutureWarning): harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), WORDS, hidden_size=32, projection_dim=16,
                          max_text_length=16)


@pytest.fixture(scope="session")
def processor(clip_dir):
    return DialCLIPProcessor.from_pretrained(clip_dir)


@pytest.fixture(scope="session")
def batch(processor):
    red, blue, green = (Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green"))
    dialogues = [
        [{"speaker": "a", "text": "hello world"}, {"speaker": "b", "text": None, "image": red}, "a red ball"],
        ["look at this photo", {"speaker": "a", "text": "nice dog", "image": blue}],
        ["blue square"],
        ["green tree", "hello"],
    ]
    return processor(dialogues, ["nice dog", blue, "hello world", green])


@pytest.fixture
def base(clip_dir):
    return DialCLIPModel.from_clip(str(clip_dir)).eval()
