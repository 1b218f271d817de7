"""Configs: defaults, serialisation, and wrong settings that fail early with messages saying what to fix."""

from __future__ import annotations

import pytest
from transformers import BertConfig, CLIPVisionConfig, ResNetConfig, VitDetConfig

from hf_dialret import (
    DualRetrieverConfig,
    MultimodalDualRetrieverConfig,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverConfig,
    SharedDualRetrieverModel,
)
from hf_dialret.backbones import tiny_text_config


def test_defaults_are_bert_base_and_resnet_50_and_round_trip():
    config = DualRetrieverConfig()
    assert isinstance(config.text_config, BertConfig) and config.text_config.hidden_size == 768
    assert isinstance(config.vision_config, ResNetConfig) and config.vision_config.hidden_sizes[-1] == 2048
    assert config.response_text_config is None and config.resolved_response_text_config is config.text_config
    assert config.pooling == "cls" and config.image_token_id is None
    custom = SharedDualRetrieverConfig(
        text_config=tiny_text_config(50).to_dict(), response_text_config={"vocab_size": 50, "hidden_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}, pooling="mean",
        projection_dim=32, image_token_id=5, intent_loss_weight=0.5,
    )
    again = SharedDualRetrieverConfig.from_dict(custom.to_dict())
    assert again.to_dict() == custom.to_dict()
    assert again.response_text_config.hidden_size == 64 and again.text_config.hidden_size == 128
    assert not hasattr(MultimodalDualRetrieverConfig(), "temperature")  # no generation-parameter names


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"pooling": "max"}, "pooling must be one of"),
        ({"projection_dim": 0}, "projection_dim must be a positive integer"),
        ({"projection_dim": 12.5}, "projection_dim"),
        ({"logit_scale_init_value": 5.0}, "exceeds the clamp log\\(100\\)"),
        ({"text_loss_weight": -1.0}, "text_loss_weight must be >= 0"),
        ({"image_token_id": -3}, "image_token_id must be a non-negative"),
        ({"classifier_dropout": 1.5}, "classifier_dropout must be in"),
        ({"share_text_encoder": True, "response_text_config": {"num_hidden_layers": 1}}, "drop response_text_config"),
        ({"response_text_config": {"vocab_size": 99}}, "share one tokenizer"),
        ({"vision_config": {"model_type": "clip"}}, "pass its vision part"),
        ({"vision_config": {"model_type": "bert"}, "text_config": {"model_type": "bert"}}, None),
    ],
)
def test_wrong_configs_fail_at_construction(kwargs, message):
    if message is None:  # a text config as vision backbone is caught when the model is built (next test)
        MultimodalDualRetrieverConfig(**kwargs)
        return
    with pytest.raises(Exception, match=message):
        SharedDualRetrieverConfig(**kwargs)


def _tiny(config_class, **kwargs):
    kwargs.setdefault("text_config", tiny_text_config(40).to_dict())
    return config_class(projection_dim=8, **kwargs)


def test_vision_backbones_without_pooled_output_or_pixels_fail_when_the_model_is_built():
    no_pool = VitDetConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
                           pretrain_image_size=32)
    with pytest.raises(ValueError, match="has no pooled output"):
        MultimodalDualRetrieverModel(_tiny(MultimodalDualRetrieverConfig, vision_config=no_pool))
    text_as_vision = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32)
    with pytest.raises(ValueError, match="does not take `pixel_values`"):
        MultimodalDualRetrieverModel(_tiny(MultimodalDualRetrieverConfig, vision_config=text_as_vision))


def test_another_vision_backbone_with_a_pooled_output_works():
    import torch

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    model = SharedDualRetrieverModel(_tiny(SharedDualRetrieverConfig, vision_config=vision)).eval()
    embeds = model.encode_image_responses(torch.randn(3, 3, 32, 32))
    assert embeds.shape == (3, 8) and model.image_tower.feature_dim == 32
