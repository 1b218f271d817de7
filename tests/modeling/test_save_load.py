"""save_pretrained / from_pretrained, Auto classes, remote code in a process without hf_dialret, from_backbones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor, BertModel, ResNetModel

from hf_dialret import (
    DialogueRetrievalProcessor,
    DualRetrieverModel,
    MultimodalDualRetrieverConfig,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverConfig,
    SharedDualRetrieverModel,
)

ALL_MODELS = [DualRetrieverModel, SharedDualRetrieverModel, MultimodalDualRetrieverModel]


@pytest.fixture(scope="module")
def saved_sdr(tiny_config, tiny_processor, tiny_batch, tmp_path_factory):
    torch.manual_seed(0)
    model = SharedDualRetrieverModel(tiny_config(SharedDualRetrieverConfig)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.1)  # a trained-looking value: must survive the round trip
    path = tmp_path_factory.mktemp("saved_sdr")
    model.save_pretrained(path)
    tiny_processor.save_pretrained(path)
    with torch.no_grad():
        reference = model(**tiny_batch)
    return path, reference


def _same(out, ref):
    for key in ("loss", "logits", "context_embeds", "response_embeds", "intent_logits"):
        a, b = getattr(out, key), getattr(ref, key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6), key


def test_save_dir_holds_safetensors_config_processor_and_remote_code(saved_sdr):
    path, _ = saved_sdr
    files = {p.name for p in Path(path).iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "tokenizer.json"} <= files
    assert {"configuration_dialogue_retrieval.py", "modeling_dialogue_retrieval.py", "towers.py",
            "retrieval_loss.py", "modeling_outputs.py", "processing_dialogue_retrieval.py"} <= files
    config = json.loads((Path(path) / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_dialogue_retrieval.SharedDualRetrieverModel"
    assert config["text_config"]["model_type"] == "bert" and config["vision_config"]["model_type"] == "resnet"


def test_from_pretrained_and_auto_classes_give_identical_outputs(saved_sdr, tiny_batch):
    path, reference = saved_sdr
    for loader in (SharedDualRetrieverModel.from_pretrained, AutoModel.from_pretrained):
        model = loader(path).eval()
        assert type(model) is SharedDualRetrieverModel
        assert model.logit_scale.item() == pytest.approx(3.1)
        with torch.no_grad():
            _same(model(**tiny_batch), reference)
    assert type(AutoConfig.from_pretrained(path)) is SharedDualRetrieverConfig


def test_processor_round_trip_through_auto_processor(saved_sdr, tiny_processor, tiny_examples):
    path, _ = saved_sdr
    loaded = AutoProcessor.from_pretrained(path)
    assert type(loaded) is DialogueRetrievalProcessor
    assert loaded.image_token_id == tiny_processor.image_token_id and loaded.max_context_length == 32
    dialogues, responses = tiny_examples
    a, b = loaded(dialogues, responses), tiny_processor(dialogues, responses)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model_class", ALL_MODELS, ids=["dr", "sdr", "mdr"])
def test_every_architecture_round_trips(model_class, tiny_config, tiny_batch, tmp_path):
    torch.manual_seed(0)
    model = model_class(tiny_config(model_class.config_class)).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    with torch.no_grad():
        _same(loaded(**tiny_batch), model(**tiny_batch))
    # loaded in bf16, the model takes the processor's float32 pixels (texts and pictures in one batch)
    half = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        out = half(**tiny_batch)
    assert out.response_embeds.dtype == torch.bfloat16
    torch.testing.assert_close(out.response_embeds.float(), model(**tiny_batch).response_embeds, atol=0.05, rtol=0.05)


def test_remote_code_loads_without_hf_dialret(saved_sdr, tiny_batch, tmp_path):
    path, reference = saved_sdr
    torch.save(dict(tiny_batch), tmp_path / "batch.pt")
    torch.save({"logits": reference.logits, "context_embeds": reference.context_embeds}, tmp_path / "ref.pt")
    # The editable install puts the source tree on sys.path through a .pth file; drop it (and the cwd) so
    # hf_dialret is really not importable, and prove it before loading.
    src = str(Path(__file__).resolve().parents[2] / "src")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path[:] = [p for p in sys.path if p not in ("", ".", {src!r}) and not p.startswith({src!r})]
        assert importlib.util.find_spec("hf_dialret") is None, "hf_dialret is still importable"
        import torch
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({str(path)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        processor = AutoProcessor.from_pretrained({str(path)!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
        batch, ref = torch.load({str(tmp_path / 'batch.pt')!r}), torch.load({str(tmp_path / 'ref.pt')!r})
        with torch.no_grad():
            out = model(**batch)
        assert torch.allclose(out.logits, ref["logits"], atol=1e-6)
        assert torch.allclose(out.context_embeds, ref["context_embeds"], atol=1e-6)
        assert "hf_dialret" not in sys.modules
        print("REMOTE_OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "REMOTE_OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("model_class", ALL_MODELS, ids=["dr", "sdr", "mdr"])
def test_from_backbones_loads_the_pretrained_weights(model_class, tiny_backbones, tiny_processor):
    text_dir, vision_dir = tiny_backbones
    model = model_class.from_backbones(text_dir, vision_dir, projection_dim=8, pooling="mean")
    bert, resnet = BertModel.from_pretrained(text_dir), ResNetModel.from_pretrained(vision_dir)
    word = bert.embeddings.word_embeddings.weight
    for tower in model._context_towers():
        assert torch.equal(tower.text.encoder.embeddings.word_embeddings.weight, word)
    assert torch.equal(model.response_text.encoder.encoder.layer[1].output.dense.weight,
                       bert.encoder.layer[1].output.dense.weight)
    assert torch.equal(model.image_tower.backbone.embedder.embedder.convolution.weight,
                       resnet.embedder.embedder.convolution.weight)
    # The context towers are separate copies in DR, not one module seen three times.
    towers = model._context_towers()
    assert len({id(t.text.encoder) for t in towers}) == len(towers)
    assert model.config.image_token_id == tiny_processor.image_token_id
    assert model.config.projection_dim == 8 and model.logit_scale.item() == pytest.approx(2.6592)


def test_from_backbones_with_a_separate_response_encoder(tiny_backbones, tiny_words, tmp_path):
    from hf_dialret.backbones import save_tiny_backbones

    small_text, _ = save_tiny_backbones(tmp_path / "small", tiny_words, text_overrides={"num_hidden_layers": 1})
    model = MultimodalDualRetrieverModel.from_backbones(*tiny_backbones, response_text=small_text)
    assert len(model.response_text.encoder.encoder.layer) == 1
    assert len(model.context.text.encoder.encoder.layer) == 2
    # Another vocabulary cannot share the processor's one tokenizer: refused with a message saying so.
    other_text, _ = save_tiny_backbones(tmp_path / "other", ["zebra"])
    with pytest.raises(Exception, match="share one tokenizer"):
        MultimodalDualRetrieverModel.from_backbones(*tiny_backbones, response_text=other_text)


def test_a_modernbert_text_backbone_trains_and_round_trips(tiny_processor, tiny_batch, tmp_path):
    """Any AutoModel text encoder: a tiny ModernBERT (rotary positions, a sliding-window first layer; the encoder
    docs/training.md measured against BERT) reads the context images through ``inputs_embeds`` and round-trips."""
    from transformers import ModernBertConfig

    from hf_dialret.backbones import tiny_vision_config

    tok = tiny_processor.tokenizer
    text_config = ModernBertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=128, layer_types=["sliding_attention", "full_attention"], local_attention=4,
        pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
    )
    config = MultimodalDualRetrieverConfig(
        text_config=text_config.to_dict(), vision_config=tiny_vision_config().to_dict(),
        image_token_id=tiny_processor.image_token_id, pooling="mean", projection_dim=16,
    )
    torch.manual_seed(0)
    model = MultimodalDualRetrieverModel(config)
    assert type(model._context_towers()[0].text.encoder).__name__ == "ModernBertModel"
    output = model(**tiny_batch)
    output.loss.backward()
    assert torch.isfinite(output.loss) and output.context_embeds.shape == (4, 2, 16)  # a query per response modality
    # the context images reached the encoder: the visual projection got a gradient
    assert model._context_towers()[0].visual_projection.weight.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.text_config.model_type == "modernbert"
    with torch.no_grad():
        _same(loaded(**tiny_batch), model(**tiny_batch))
