"""DR, SDR and MDR: shapes, the retrieval surface, losses against a reference, overfitting, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch

from hf_dialret import (
    DualRetrieverConfig,
    DualRetrieverModel,
    MultimodalDualRetrieverConfig,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverConfig,
    SharedDualRetrieverModel,
    dialogue_retrieval_loss,
)

ARCHS = [
    (DualRetrieverConfig, DualRetrieverModel),
    (SharedDualRetrieverConfig, SharedDualRetrieverModel),
    (MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel),
]
IDS = ["dr", "sdr", "mdr"]


def build(tiny_config, config_class, model_class, seed=0, **kwargs):
    torch.manual_seed(seed)
    return model_class(tiny_config(config_class, **kwargs))


@pytest.mark.parametrize("config_class,model_class", ARCHS, ids=IDS)
def test_forward_shapes_and_retrieval_surface(tiny_config, tiny_batch, config_class, model_class):
    model = build(tiny_config, config_class, model_class).eval()
    out = model(**tiny_batch)
    assert out.context_embeds.shape == (4, 2, 16)
    assert out.response_embeds.shape == (4, 16)
    assert out.logits.shape == (4, 4)
    assert out.loss.shape == () and torch.isfinite(out.loss)  # loss in eval mode too
    assert torch.allclose(out.context_embeds.norm(dim=-1), torch.ones(4, 2), atol=1e-5)
    if model.has_intent_head:
        assert out.intent_logits.shape == (4, 2)
        assert torch.allclose(model.predict_intent(tiny_batch["input_ids"], tiny_batch["attention_mask"],
                                                   tiny_batch["context_pixel_values"]), out.intent_logits)
    else:
        assert out.intent_logits is None and model.joint_response_pool
        assert torch.equal(out.context_embeds[:, 0], out.context_embeds[:, 1])  # one query space
    ctx = {k: tiny_batch[k] for k in ("input_ids", "attention_mask", "context_pixel_values")}
    assert torch.allclose(model.encode_context(**ctx), out.context_embeds, atol=1e-6)
    assert torch.allclose(model.encode_context(**ctx, modality="image"), out.context_embeds[:, 1], atol=1e-6)
    resp = model.encode_responses(
        tiny_batch["response_input_ids"], tiny_batch["response_attention_mask"], tiny_batch["response_pixel_values"],
        tiny_batch["response_modality"],
    )
    assert torch.allclose(resp, out.response_embeds, atol=1e-6)
    # Batch order is text, image, text, image; without response_modality: texts first, then images.
    texts_first = model.encode_responses(
        tiny_batch["response_input_ids"], tiny_batch["response_attention_mask"], tiny_batch["response_pixel_values"]
    )
    assert torch.allclose(texts_first, resp[[0, 2, 1, 3]], atol=1e-6)
    # Context-only and response-only calls.
    only_ctx = model(**ctx)
    assert only_ctx.loss is None and only_ctx.response_embeds is None
    only_resp = model(response_pixel_values=tiny_batch["response_pixel_values"])
    assert only_resp.context_embeds is None and only_resp.response_embeds.shape == (2, 16)
    no_loss = model(**tiny_batch, return_loss=False)
    assert no_loss.loss is None and torch.allclose(no_loss.logits, out.logits)


@pytest.mark.parametrize("config_class,model_class", ARCHS, ids=IDS)
def test_model_loss_matches_a_hand_computed_reference(tiny_config, tiny_batch, config_class, model_class):
    model = build(tiny_config, config_class, model_class, text_loss_weight=0.7, image_loss_weight=1.3,
                  intent_loss_weight=0.4, logit_scale_init_value=math.log(50.0)).eval()
    ids = torch.tensor([7, 8, 7, 9])  # examples 0 and 2 share a response: each masked from the other's negatives
    with torch.no_grad():
        out = model(**tiny_batch, response_ids=ids)
    ctx, resp, mod = out.context_embeds, out.response_embeds, tiny_batch["response_modality"]
    total, per_modality = 0.0, {0: [], 1: []}
    for i in range(4):
        pool = [j for j in range(4) if (j == i or ids[j] != ids[i]) and (model.joint_response_pool or mod[j] == mod[i])]
        scores = {j: 50.0 * float(ctx[i, int(mod[j])] @ resp[j]) for j in pool}
        nll = math.log(sum(math.exp(s) for s in scores.values())) - scores[i]
        per_modality[int(mod[i])].append(nll)
    if model.joint_response_pool:
        total = sum(per_modality[0] + per_modality[1]) / 4
    else:
        total = 0.7 * sum(per_modality[0]) / 2 + 1.3 * sum(per_modality[1]) / 2
        intent = out.intent_logits
        total += 0.4 * sum(math.log(float(intent[i].exp().sum())) - float(intent[i, int(mod[i])]) for i in range(4)) / 4
    assert out.loss.item() == pytest.approx(total, rel=1e-4)
    # compute_loss (the trainer's entry point) gives the same value.
    assert model.compute_loss(ctx, resp, mod, ids, out.intent_logits).item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_logit_scale_is_clamped_at_log_100(tiny_config, tiny_batch):
    model = build(tiny_config, MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel).eval()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    out = model(**tiny_batch)
    scores = torch.einsum("bd,jd->bj", out.context_embeds[:, 0], out.response_embeds)
    assert torch.allclose(out.logits, scores * 100.0, atol=1e-4)


@pytest.mark.parametrize("config_class,model_class", ARCHS, ids=IDS)
def test_tiny_batch_is_overfit(tiny_config, tiny_batch, config_class, model_class):
    model = build(tiny_config, config_class, model_class, seed=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):  # converges in 12-20 steps; stop as soon as the loss fell by 90 %
        loss = model(**tiny_batch).loss
        losses.append(loss.item())
        if losses[-1] < 0.1 * losses[0]:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.1 * losses[0], losses


@pytest.mark.parametrize("config_class,model_class", ARCHS, ids=IDS)
def test_gradient_checkpointing_backward_matches(tiny_config, tiny_batch, config_class, model_class):
    model = build(tiny_config, config_class, model_class, classifier_dropout=0.0).train()  # same graph both runs
    model(**tiny_batch).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    model(**tiny_batch).loss.backward()
    for name, grad in reference.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, rtol=1e-4, atol=1e-5), name


def test_share_text_encoder_drops_the_response_encoder(tiny_config, tiny_batch):
    shared = build(tiny_config, SharedDualRetrieverConfig, SharedDualRetrieverModel, share_text_encoder=True)
    separate = build(tiny_config, SharedDualRetrieverConfig, SharedDualRetrieverModel)
    encoder_params = sum(p.numel() for p in separate.response_text.parameters())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert shared.response_text is None and n(separate) - n(shared) == encoder_params
    assert shared(**tiny_batch).response_embeds.shape == (4, 16)


def test_clear_errors_on_inconsistent_inputs(tiny_config, tiny_batch):
    model = build(tiny_config, SharedDualRetrieverConfig, SharedDualRetrieverModel).eval()
    with pytest.raises(ValueError, match="image placeholders but no context_pixel_values"):
        model(tiny_batch["input_ids"], tiny_batch["attention_mask"])
    with pytest.raises(ValueError, match="must match one to one"):
        model(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["context_pixel_values"][:1])
    with pytest.raises(ValueError, match="response_modality marks"):
        model(**{**tiny_batch, "response_modality": torch.tensor([0, 0, 0, 1])})
    with pytest.raises(ValueError, match="one response per context"):
        model(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["context_pixel_values"],
              response_pixel_values=tiny_batch["response_pixel_values"])
    with pytest.raises(ValueError, match="modality must be one of"):
        model.encode_context(tiny_batch["input_ids"], modality="video")
    no_token = SharedDualRetrieverModel(tiny_config(SharedDualRetrieverConfig, image_token_id=None))
    with pytest.raises(ValueError, match="image_token_id is not set"):
        no_token(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["context_pixel_values"])


def test_context_images_change_the_context_embedding(tiny_config, tiny_batch):
    model = build(tiny_config, MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel).eval()
    ctx = {k: tiny_batch[k] for k in ("input_ids", "attention_mask", "context_pixel_values")}
    base = model.encode_context(**ctx, modality="text")
    flipped = model.encode_context(**{**ctx, "context_pixel_values": ctx["context_pixel_values"].flip(0)}, modality="text")
    with_image = tiny_batch["input_ids"].eq(model.config.image_token_id).any(1)
    assert with_image.tolist() == [True, False, True, False]
    assert not torch.allclose(base[with_image], flipped[with_image])  # the images are really read
    assert torch.allclose(base[~with_image], flipped[~with_image])  # and only by their own dialogue
    # The replacement equals a hand-built inputs_embeds (vectorised masked_scatter == per-placeholder loop).
    tower, ids = model.context, tiny_batch["input_ids"]
    feats = tower.visual_projection(model.image_tower(ctx["context_pixel_values"]))
    embeds = tower.text.encoder.get_input_embeddings()(ids.masked_fill(ids == model.config.image_token_id, 0)).clone()
    for k, (row, col) in enumerate((ids == model.config.image_token_id).nonzero().tolist()):
        embeds[row, col] = feats[k]
    pooled = tower.text(attention_mask=ctx["attention_mask"], inputs_embeds=embeds)
    expected = torch.nn.functional.normalize(model.query_projection(pooled), dim=-1)
    assert torch.allclose(base, expected, atol=1e-5)


def test_loss_function_is_the_shared_one():
    # The trainer calls the same function on gathered candidates; the models must not fork it.
    import hf_dialret.modeling.modeling_dialogue_retrieval as modeling

    assert modeling.dialogue_retrieval_loss is dialogue_retrieval_loss
