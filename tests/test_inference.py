"""The fast encoding path gives the model's own embeddings, in input order, in fp32 and (closely) in bf16."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import hf_dialret
from hf_dialret import inference
from hf_dialret.inference import encode_contexts, encode_responses, ensure_sdpa, resolve_precision

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def inputs(tiny_examples):
    """Eight dialogues of different lengths (so buckets reorder them) with context images, and mixed responses."""
    dialogues, responses = tiny_examples
    long_one = [f"turn number {i} is a nice red ball" for i in range(6)]
    return [*dialogues, long_one, ["hi"], *dialogues[:2]], [*responses, "a much longer reply about a red ball", "ok"]


@pytest.fixture(scope="module", params=["MultimodalDualRetriever", "SharedDualRetriever", "DualRetriever"])
def model(request, tiny_config):
    torch.manual_seed(0)
    config = tiny_config(getattr(hf_dialret, f"{request.param}Config"))
    return getattr(hf_dialret, f"{request.param}Model")(config).eval()


def _direct(model, processor, dialogues, responses):
    """The reference: one processor call and one forward over everything, in input order."""
    with torch.no_grad():
        batch = processor(dialogues, responses)
        contexts = model.encode_context(batch["input_ids"], batch["attention_mask"], batch.get("context_pixel_values"))
        embeds = model.encode_responses(batch.get("response_input_ids"), batch.get("response_attention_mask"),
                                        batch.get("response_pixel_values"), batch["response_modality"])
    return contexts, embeds


def test_fp32_matches_the_model_in_input_order(model, tiny_processor, inputs):
    dialogues, responses = inputs
    want_contexts, want_responses = _direct(model, tiny_processor, dialogues, responses)
    # batch 3 / chunk 5: several chunks, several buckets per chunk, a ragged last batch
    contexts = encode_contexts(model, tiny_processor, dialogues, batch_size=3, precision="fp32", chunk_size=5)
    got_responses = encode_responses(model, tiny_processor, responses, batch_size=3, precision="fp32", chunk_size=5)
    assert contexts.dtype == got_responses.dtype == torch.float32
    torch.testing.assert_close(contexts, want_contexts, **TOL)
    torch.testing.assert_close(got_responses, want_responses, **TOL)
    text_only = encode_contexts(model, tiny_processor, dialogues, batch_size=4, precision="fp32", modality="image")
    torch.testing.assert_close(text_only, want_contexts[:, 1], **TOL)
    assert not model.training


def test_bf16_is_close_and_normalised(tiny_config, tiny_processor, inputs):
    torch.manual_seed(0)
    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig)).train()
    dialogues, responses = inputs
    fp32 = encode_responses(model, tiny_processor, responses, batch_size=4, precision="fp32")
    bf16 = encode_responses(model, tiny_processor, responses, batch_size=4, precision="bf16")
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16.norm(dim=-1), torch.ones(len(responses)), rtol=0, atol=1e-5)
    assert float((bf16 * fp32).sum(-1).min()) > 0.99  # cosine with the fp32 embedding
    assert model.training  # the caller's mode is given back


def test_precision_resolution(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(inference, "cpu_bf16_flags", lambda: frozenset({"amx_bf16"}))
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(inference, "cpu_bf16_flags", lambda: frozenset())
    assert resolve_precision("auto", "cpu") == "fp32"  # emulated bf16 would be slower than fp32


def test_ensure_sdpa_switches_eager_attention(tiny_config):
    model = hf_dialret.SharedDualRetrieverModel(tiny_config(hf_dialret.SharedDualRetrieverConfig))
    model.context.text.encoder.set_attn_implementation("eager")
    assert ensure_sdpa(model) == []
    assert model.context.text.encoder.config._attn_implementation == "sdpa"


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PeftModel reads a deprecated transformers attribute
def test_dialclip_turns_follow_their_dialogue(tmp_path):
    """DialCLIP's per-turn context tensors are re-indexed when the buckets reorder the dialogues."""
    from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor
    from hf_dialret.prompts import build_dialclip_for_training, save_tiny_clip

    clip_dir = save_tiny_clip(tmp_path, ["hello world", "a red ball", "nice dog"], hidden_size=32, projection_dim=16,
                              max_text_length=16)
    processor = DialCLIPProcessor.from_pretrained(clip_dir)
    red = Image.new("RGB", (32, 32), "red")
    dialogues = [["hello"], ["hello world", {"speaker": "b", "text": None, "image": red}, "a red ball and a nice dog"],
                 ["nice dog", "a red ball"], ["a red ball", "hello world nice dog"]]
    torch.manual_seed(0)
    model = build_dialclip_for_training(str(clip_dir)).eval()
    with torch.no_grad():
        want = model.encode_context(**{k: v for k, v in processor(dialogues).items()})
    got = encode_contexts(model, processor, dialogues, batch_size=2, precision="fp32")
    torch.testing.assert_close(got, want, **TOL)


def test_images_are_batched_in_order_without_an_explicit_chunk(tiny_config, tiny_processor):
    """Images go batch_size at a time (not one big chunk); texts and images interleaved come back in input order."""
    torch.manual_seed(0)
    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig)).eval()
    red, blue, green, white = (Image.new("RGB", (48, 48), colour) for colour in ("red", "blue", "green", "white"))
    responses = [red, "wow nice", blue, green, "a red ball", white, "ok"]
    _, want = _direct(model, tiny_processor, [["hi"]] * len(responses), responses)
    got = encode_responses(model, tiny_processor, responses, batch_size=2, precision="fp32")
    torch.testing.assert_close(got, want, **TOL)


def test_context_and_intent_in_one_pass_match_the_model(tiny_config, tiny_processor, inputs):
    """encode_contexts_with_intent == encode_context + predict_intent, for DR (own intent encoder) and SDR (shared)."""
    dialogues, _ = inputs
    for name in ("DualRetriever", "SharedDualRetriever"):
        torch.manual_seed(0)
        model = getattr(hf_dialret, f"{name}Model")(tiny_config(getattr(hf_dialret, f"{name}Config"))).eval()
        with torch.no_grad():
            batch = tiny_processor(dialogues=dialogues)
            args = (batch["input_ids"], batch["attention_mask"], batch.get("context_pixel_values"))
            want_queries, want_intent = model.encode_context(*args), model.predict_intent(*args)
        queries, intent = inference.encode_contexts_with_intent(model, tiny_processor, dialogues, batch_size=3,
                                                                precision="fp32", chunk_size=5)
        torch.testing.assert_close(queries, want_queries, **TOL)
        torch.testing.assert_close(intent, want_intent, **TOL)
    mdr = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig))
    with pytest.raises(ValueError, match="no intent head"):
        inference.encode_contexts_with_intent(mdr, tiny_processor, dialogues, precision="fp32")


def test_eval_mode_gives_every_module_its_own_mode_back(tiny_config, tiny_processor, inputs):
    """A training model with a frozen (eval-mode) tower: encoding runs without dropout and leaves both modes as
    they were (``model.train(was_training)`` would have switched the frozen tower to training)."""
    torch.manual_seed(0)
    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig)).train()
    for module in model.modules():  # the tiny configs have no dropout: give them some, so that it would show
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.image_tower.eval()
    _, responses = inputs
    first = encode_responses(model, tiny_processor, responses, precision="fp32")
    second = encode_responses(model, tiny_processor, responses, precision="fp32")
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no dropout while encoding
    assert model.training and model.context.training
    assert not any(module.training for module in model.image_tower.modules())
    with inference.eval_mode(model):
        assert not any(module.training for module in model.modules())
    assert model.training and not model.image_tower.training
