"""eager_attention: the CPU-bf16 training switch from SDPA to eager attention, and the trainer using it."""

from __future__ import annotations

import pytest
import torch
from retriever_fixtures import collator, tiny_corpus, tiny_model, tiny_processor
from transformers import TrainerCallback

from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments
from hf_dialret.training.attention import bf16_on_cpu, eager_attention, sdpa_configs


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def _implementations(model) -> list[str]:
    return [module.config._attn_implementation for module in model.modules()
            if hasattr(module, "config") and module is not model and hasattr(module.config, "_attn_implementation")]


def test_switches_every_sdpa_encoder_and_restores_them(processor) -> None:
    model = tiny_model("mdr", processor, dropout=0.0)
    # Distinct configs: the retriever's and its text encoders' (here one, shared by the context and response
    # towers); the ResNet has no SDPA attention.
    configs = sdpa_configs(model)
    assert model.context.text.encoder.config in configs and model.response_text.encoder.config in configs
    before = _implementations(model)
    with eager_attention(model) as switched:
        assert switched == len(configs)
        assert not sdpa_configs(model)
        assert model.context.text.encoder.config._attn_implementation == "eager"
        assert model.response_text.encoder.config._attn_implementation == "eager"
    assert _implementations(model) == before


def test_restores_after_an_error_and_does_nothing_when_disabled(processor) -> None:
    model = tiny_model("sdr", processor, dropout=0.0)
    count = len(sdpa_configs(model))
    with pytest.raises(RuntimeError, match="boom"), eager_attention(model):
        raise RuntimeError("boom")
    assert len(sdpa_configs(model)) == count > 0
    with eager_attention(model, enabled=False) as switched:
        assert switched == 0
        assert len(sdpa_configs(model)) == count


def test_eager_attention_computes_the_same_embeddings(processor) -> None:
    model = tiny_model("mdr", processor, dropout=0.0).eval()
    corpus = tiny_corpus(num_train=12, num_test=4)
    batch = collator(processor)([corpus["train"][i] for i in range(12)])
    assert bool((batch["attention_mask"] == 0).any())  # padded rows: the masks must agree too
    with torch.no_grad():
        sdpa = model(**batch)
        with eager_attention(model):
            eager = model(**batch)
    torch.testing.assert_close(eager.context_embeds, sdpa.context_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager.response_embeds, sdpa.response_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager.loss, sdpa.loss, atol=1e-5, rtol=1e-5)


def _args(tmp_path, **overrides) -> DialogueRetrievalTrainingArguments:
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=2, learning_rate=1e-3,
                  report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no")
    values.update(overrides)
    return DialogueRetrievalTrainingArguments(**values)


def test_bf16_on_cpu(tmp_path) -> None:
    assert bf16_on_cpu(_args(tmp_path, bf16=True))
    assert not bf16_on_cpu(_args(tmp_path))


class _RecordAttention(TrainerCallback):
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.seen.add(model.context.text.encoder.config._attn_implementation)


@pytest.mark.parametrize("bf16, during", [(True, "eager"), (False, "sdpa")])
def test_trainer_trains_with_eager_attention_only_in_cpu_bf16(tmp_path, processor, bf16, during, monkeypatch) -> None:
    model = tiny_model("mdr", processor, dropout=0.0)
    record = _RecordAttention()
    trainer = DialogueRetrievalTrainer(
        model=model, args=_args(tmp_path, bf16=bf16), train_dataset=tiny_corpus(num_train=16, num_test=4)["train"],
        data_collator=collator(processor), processing_class=processor, callbacks=[record],
    )
    # a CPU with native bf16, so that the emulation warning (tested below) stays out of this test
    monkeypatch.setattr("hf_dialret.training.trainer.cpu_bf16_flags", lambda: frozenset({"amx_bf16"}))
    result = trainer.train()
    assert record.seen == {during}
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert model.context.text.encoder.config._attn_implementation == "sdpa"  # restored for inference


def test_bf16_training_warns_on_a_cpu_that_emulates_bf16(tmp_path, processor, monkeypatch) -> None:
    trainer = DialogueRetrievalTrainer(
        model=tiny_model("mdr", processor, dropout=0.0), args=_args(tmp_path, bf16=True, max_steps=1),
        train_dataset=tiny_corpus(num_train=8, num_test=4)["train"], data_collator=collator(processor),
        processing_class=processor,
    )
    monkeypatch.setattr("hf_dialret.training.trainer.cpu_bf16_flags", lambda: frozenset())
    with pytest.warns(UserWarning, match="CPU without native bf16"):
        trainer.train()
