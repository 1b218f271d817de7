"""count_parameters: configs on the meta device agree with built models; base-size numbers and ratios."""

from __future__ import annotations

import pytest
import torch

from hf_dialret import (
    DualRetrieverConfig,
    MultimodalDualRetrieverConfig,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverConfig,
    count_parameters,
)
from hf_dialret.backbones import tiny_text_config, tiny_vision_config


def _tiny(config_class, **kwargs):
    return config_class(text_config=tiny_text_config(64).to_dict(), vision_config=tiny_vision_config().to_dict(),
                        projection_dim=16, **kwargs)


def test_config_count_on_meta_equals_the_built_model():
    config = _tiny(MultimodalDualRetrieverConfig)
    model = MultimodalDualRetrieverModel(config)
    from_model, from_config = count_parameters(model), count_parameters(config)
    assert from_config == from_model
    assert from_model["total"] == sum(p.numel() for p in model.parameters())
    assert sum(from_model["components"].values()) == from_model["total"] == from_model["trainable"]
    model.image_tower.requires_grad_(False)
    frozen = count_parameters(model)
    assert frozen["trainable"] == frozen["total"] - frozen["components"]["image_tower"]


def test_shared_text_encoder_is_counted_once():
    separate = count_parameters(_tiny(SharedDualRetrieverConfig))
    shared = count_parameters(_tiny(SharedDualRetrieverConfig, share_text_encoder=True))
    assert "response_text" not in shared["components"]
    assert separate["total"] - shared["total"] == separate["components"]["response_text"]


def test_base_size_counts_and_ratios():
    counts = {c.model_type: count_parameters(c()) for c in (DualRetrieverConfig, SharedDualRetrieverConfig,
                                                               MultimodalDualRetrieverConfig)}
    dr, sdr, mdr = counts.values()
    assert dr["components"]["response_text"] == 108_891_648  # BERT-base without its pooler
    assert dr["components"]["image_tower"] == 23_508_032  # ResNet-50 trunk
    # A context encoder = BERT-base + the 2048 -> 768 visual-token projection.
    assert dr["components"]["context_text"] == 108_891_648 + 2048 * 768 + 768
    assert dr["total"] / sdr["total"] == pytest.approx(1.905, abs=0.01)
    assert dr["total"] / mdr["total"] == pytest.approx(1.911, abs=0.01)
    assert not any(p.is_meta for p in torch.nn.Linear(1, 1).parameters())  # meta building leaks no default device
