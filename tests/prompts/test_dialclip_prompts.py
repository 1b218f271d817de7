"""The DialCLIP PEFT method: identity at zero length, prompts/experts/context act where they should, training
touches only the adapter, the 77-position budget, and the trainable fraction."""

from __future__ import annotations

import peft.mapping as pm
import pytest
import torch
from peft import get_peft_model

from hf_dialret.modeling.configuration_dialclip import DialCLIPConfig
from hf_dialret.modeling.modeling_dialclip import DialCLIPModel
from hf_dialret.prompts import (
    DialCLIPPeftType,
    DialCLIPPromptConfig,
    DialCLIPPromptModel,
    build_dialclip_for_training,
    register_dialclip_peft_method,
)
from hf_dialret.prompts.layer import extend_attention_mask

VIT_B32_CLIP_PARAMS = 151_277_313


def _outputs(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.context_embeds, out.response_embeds


@pytest.mark.parametrize("expert_rank", [0, 4])
def test_zero_length_prompts_and_fresh_experts_equal_plain_clip(base, clip_dir, batch, expert_rank):
    plain = _outputs(base, batch)
    config = DialCLIPPromptConfig(domain_prompt_length=0, context_prompt_length=0, expert_rank=expert_rank)
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), config).eval()
    adapted = _outputs(peft_model, batch)
    assert torch.equal(adapted[0], plain[0]) and torch.equal(adapted[1], plain[1])


def test_prompts_change_outputs_and_disable_adapter_restores_clip(base, clip_dir, batch):
    plain = _outputs(base, batch)
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).eval()
    context, responses = _outputs(peft_model, batch)
    assert not torch.allclose(context, plain[0], atol=1e-4)  # domain + context prompts on the query
    assert not torch.allclose(responses, plain[1], atol=1e-4)  # domain prompts on both towers
    with peft_model.disable_adapter():
        off = _outputs(peft_model, batch)
    assert torch.equal(off[0], plain[0]) and torch.equal(off[1], plain[1])


def test_context_prompts_read_the_dialogue_context(clip_dir, processor):
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).eval()
    only_context = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)),
                                  DialCLIPPromptConfig(context_prompt_length=0)).eval()
    a = processor([["nice dog", "blue square", "hello"]])
    b = processor([["green tree", "a red ball", "hello"]])
    bare = processor([["hello"]])  # no context turns at all: prompts come from the generator's biases
    for model, should_differ in ((peft_model, True), (only_context, False)):
        qa, qb, qbare = (_outputs(model, x)[0] for x in (a, b, bare))
        assert torch.allclose(qa, qb, atol=1e-6) is not should_differ
        assert torch.isfinite(qbare).all()


def test_experts_are_routed_by_retrieval_type(clip_dir, batch):
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).eval()
    before = _outputs(peft_model, batch)
    up = peft_model.base_model.model.clip.text_projection.dialclip_expert_up["default"]
    with torch.no_grad():
        up[1].normal_()  # the text projection's "image" expert: the query for image candidates only
    context, responses = _outputs(peft_model, batch)
    assert torch.equal(context[:, 0], before[0][:, 0]) and torch.equal(responses, before[1])
    assert not torch.allclose(context[:, 1], before[0][:, 1], atol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prompted_query_does_not_depend_on_padding(clip_dir, processor, attn):
    model = DialCLIPModel.from_clip(str(clip_dir), attn_implementation=attn)
    peft_model = get_peft_model(model, DialCLIPPromptConfig()).eval()
    dialogue = ["nice dog", "hello world"]
    alone = _outputs(peft_model, processor([dialogue]))[0]
    padded = processor([dialogue, ["a red ball", "look at this photo a red ball blue square"]])
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # row 0 really is padded
    assert torch.allclose(_outputs(peft_model, padded)[0][:1], alone, atol=1e-5)


def test_extend_attention_mask_bool_and_float():
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    causal[:, 3] = False  # a padded last key
    mask = causal.expand(1, 1, 4, 4)
    grown = extend_attention_mask(mask, 2, is_causal=True)
    assert grown.shape == (1, 1, 6, 6) and torch.equal(grown[0, 0, 2:, 2:], causal)
    assert grown[0, 0, 2:, :2].all() and not grown[0, 0, :2, 2:].any() and not grown[0, 0, 0, 1]
    additive = torch.zeros(1, 1, 4, 4).masked_fill(~mask, torch.finfo(torch.float32).min)
    assert torch.equal(extend_attention_mask(additive, 2, is_causal=True) == 0, grown)
    assert extend_attention_mask(None, 2, is_causal=True) is None


def test_training_step_changes_only_the_adapter(clip_dir, batch):
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig())
    frozen = {n: p.detach().clone() for n, p in peft_model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all("dialclip_" in n for n in trainable) and len(frozen) > 0
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(2):  # two steps: the zero-initialised expert "up" matrices unblock the "down" ones
        optimizer.zero_grad()
        peft_model(**batch).loss.backward()
        optimizer.step()
    params = dict(peft_model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())  # CLIP (incl. logit_scale) untouched
    unchanged = [n for n, v in trainable.items() if v.numel() and torch.equal(params[n], v)]
    assert unchanged == []


def test_prompts_use_no_text_positions(clip_dir):
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).eval()
    full = torch.randint(2, 50, (2, 16))
    full[:, -1] = 1  # <|endoftext|>
    with torch.no_grad():  # 16 real positions (the tiny tower's limit) + 4 domain + 16 context prompt tokens
        assert peft_model(input_ids=full).context_embeds.shape == (2, 2, 16)
    with pytest.raises(ValueError, match="never use any of these positions"):
        peft_model(input_ids=torch.ones(2, 17, dtype=torch.long))


def test_trainable_parameters_at_tiny_size(clip_dir, capsys):
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig())
    peft_model.print_trainable_parameters()
    trainable, total = peft_model.get_nb_trainable_parameters()
    layers, width, proj, b, m, r = 2, 32, 16, 32, 16, 4
    domain = 4 * width * layers * 2
    generator = (proj * b + b) + (b * m * b + m * b) + (b * width + width)
    experts = r * (width + proj) * 3  # text projection: 2 experts, visual projection: 1
    assert trainable == domain + generator + experts
    assert f"trainable params: {trainable:,}" in capsys.readouterr().out


def test_vit_b32_trainable_fraction_on_meta_device():
    with torch.device("meta"):
        peft_model = get_peft_model(DialCLIPModel(DialCLIPConfig()), DialCLIPPromptConfig())
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert total - trainable == VIT_B32_CLIP_PARAMS
    assert trainable == 124_960  # the figure in docs/dialclip.md: 61,440 domain + 50,208 generator + 13,312 experts
    assert trainable / VIT_B32_CLIP_PARAMS <= 0.001


def test_registration_is_idempotent_and_config_round_trips(tmp_path):
    register_dialclip_peft_method()
    register_dialclip_peft_method()
    assert pm.PEFT_TYPE_TO_TUNER_MAPPING["DIALCLIP"] is DialCLIPPromptModel
    assert DialCLIPPeftType.DIALCLIP.value == DialCLIPPeftType.DIALCLIP.name
    config = DialCLIPPromptConfig(domain_prompt_length=2, context_prompt_layer=1)
    config.save_pretrained(tmp_path)
    loaded = DialCLIPPromptConfig.from_pretrained(tmp_path)
    assert loaded.peft_type == DialCLIPPeftType.DIALCLIP and loaded.domain_prompt_length == 2
    for bad in ({"domain_prompt_length": -1}, {"context_prompt_layer": 0}, {"expert_rank": -2}):
        with pytest.raises(ValueError):
            DialCLIPPromptConfig(**bad)


def test_wrong_model_or_layer_is_a_clear_error(clip_dir):
    with pytest.raises(ValueError, match="outside the text encoder's layers 1..2"):
        get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig(context_prompt_layer=3))
    with pytest.raises(TypeError, match="DialCLIPModel"):
        get_peft_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), DialCLIPPromptConfig(target_modules=["0"]))


def test_build_for_training_from_the_tiny_preset(clip_dir, batch):
    peft_model = build_dialclip_for_training(clip_dir)
    assert peft_model.peft_config["default"].base_model_name_or_path == str(clip_dir)
    peft_model.train()
    loss = peft_model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_encode_methods_through_the_peft_model_match_forward(clip_dir, batch):
    # The prompts live inside the wrapped CLIP layers (no PEFT forward hooks), so calling the retrieval surface
    # directly on the PeftModel (as a response index does) gives the same embeddings as forward.
    peft_model = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).eval()
    context, responses = _outputs(peft_model, batch)
    query_keys = ("input_ids", "attention_mask", "context_pixel_values", "context_input_ids", "context_attention_mask",
                  "context_text_batch_index", "context_image_batch_index")
    response_keys = ("response_input_ids", "response_attention_mask", "response_pixel_values", "response_modality")
    with torch.no_grad():
        assert torch.equal(peft_model.encode_context(**{k: batch[k] for k in query_keys}), context)
        assert torch.equal(peft_model.encode_responses(**{k: batch[k] for k in response_keys}), responses)


def test_activation_checkpointing_trains_the_adapter(clip_dir, batch):
    model = DialCLIPModel.from_clip(str(clip_dir))
    model.activation_checkpointing_enable()  # defaults, as TrainingArguments(gradient_checkpointing=True) uses
    peft_model = get_peft_model(model, DialCLIPPromptConfig()).train()
    assert peft_model.base_model.model.clip.text_model.encoder.layers[0].base_layer.gradient_checkpointing
    reference = get_peft_model(DialCLIPModel.from_clip(str(clip_dir)), DialCLIPPromptConfig()).train()
    reference.load_state_dict(peft_model.state_dict())
    for m in (peft_model, reference):
        m(**batch).loss.backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    for n, p in reference.named_parameters():
        if p.requires_grad and p.numel():
            assert grads[n] is not None and torch.allclose(grads[n], p.grad, atol=1e-5), n
