"""DialogueRetrievalTrainer: exact resume, end-to-end smoke on a tiny synthetic corpus, pre-encoding, time budget."""

from __future__ import annotations

import math

import pytest
import torch
from retriever_fixtures import collator, tiny_corpus, tiny_model, tiny_processor
from transformers import TrainerCallback

from hf_dialret.training import (
    DialogueRetrievalTrainer,
    DialogueRetrievalTrainingArguments,
    PreEncodedCollator,
    PreEncodedDataset,
)
from hf_dialret.training.schedule import BudgetProgress, time_aware_scheduler, wsd_decay_ratio


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def corpus():
    return tiny_corpus(num_train=48, num_test=30)


def _args(output_dir, **overrides) -> DialogueRetrievalTrainingArguments:
    values = dict(output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=6, learning_rate=2e-3,
                  warmup_steps=0, report_to="none", use_cpu=True, seed=0, disable_tqdm=True, logging_steps=1,
                  save_strategy="no", per_device_eval_batch_size=16)
    values.update(overrides)
    return DialogueRetrievalTrainingArguments(**values)


class _StopAt(TrainerCallback):
    """Simulates an interruption: ends training after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resumed_run_ends_with_the_same_weights(tmp_path, processor, corpus) -> None:
    def trainer(output_dir, callbacks=()):
        return DialogueRetrievalTrainer(
            model=tiny_model("sdr", processor), args=_args(output_dir, save_strategy="steps", save_steps=3),
            train_dataset=corpus["train"], data_collator=collator(processor), processing_class=processor,
            callbacks=list(callbacks),
        )

    full = trainer(tmp_path / "full")
    full.train()
    interrupted = trainer(tmp_path / "part", [_StopAt(3)])
    interrupted.train()
    assert interrupted.state.global_step == 3
    halfway = {name: value.clone() for name, value in interrupted.model.state_dict().items()}
    resumed = trainer(tmp_path / "part")
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))
    assert resumed.state.global_step == 6
    final, reference = resumed.model.state_dict(), full.model.state_dict()
    assert max(float((final[name].float() - reference[name].float()).abs().max()) for name in reference) == 0.0
    # The comparison is meaningful: the weights did move between step 3 and step 6.
    assert any(not torch.equal(halfway[name], reference[name]) for name in reference)


def test_end_to_end_training_and_evaluation(tmp_path, processor, corpus) -> None:
    model = tiny_model("mdr", processor, dropout=0.0)
    trainer = DialogueRetrievalTrainer(
        model=model, args=_args(tmp_path, max_steps=30, per_device_train_batch_size=16),
        train_dataset=corpus["train"], data_collator=collator(processor), processing_class=processor,
    )
    before = trainer.evaluate(corpus["test"])
    trainer.train()
    after = trainer.evaluate(corpus["test"])
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns the training set
    report = trainer.last_eval_report
    assert set(report) >= {"text_retrieval", "image_retrieval", "multimodal", "multimodal_oracle_intent", "intent", "pool"}
    assert report["pool"]["num_queries"] == 30 and report["multimodal"]["overall"]["num_queries"] == 30
    assert after["eval_multimodal_overall_num_queries"] == before["eval_multimodal_overall_num_queries"] == 30
    assert report["multimodal"]["protocol"] == "joint pool"
    assert trainer.last_eval_scores.shape == (30, report["pool"]["num_candidates"])
    assert after["eval_multimodal_overall_mean_rank"] != before["eval_multimodal_overall_mean_rank"]


def test_two_step_models_report_predicted_intent(tmp_path, processor, corpus) -> None:
    trainer = DialogueRetrievalTrainer(model=tiny_model("dr", processor), args=_args(tmp_path), processing_class=processor,
                                       data_collator=collator(processor))
    report = trainer.retrieval_report(corpus["test"])
    assert report["multimodal"]["protocol"].startswith("predicted intent")
    assert report["intent"]["source"] == "intent head"


def test_pre_encoded_batches_equal_collated_batches(processor, corpus) -> None:
    rows = [corpus["train"][i] for i in range(10)]
    expected = collator(processor)(rows)
    pre_encoded = PreEncodedDataset(corpus["train"].select(range(10)), collator(processor), processor.image_token_id,
                                    chunk_size=4)
    batch = PreEncodedCollator(processor.tokenizer.pad_token_id)([pre_encoded[i] for i in range(10)])
    assert set(batch) == set(expected)
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key


def test_time_budget_stops_training_and_decays_the_learning_rate(tmp_path, processor, corpus) -> None:
    trainer = DialogueRetrievalTrainer(
        model=tiny_model("mdr", processor),
        args=_args(tmp_path, max_steps=10_000, max_train_seconds=1.5, save_strategy="steps", save_steps=5_000),
        train_dataset=corpus["train"], data_collator=collator(processor), processing_class=processor,
    )
    trainer.train()
    steps = trainer.state.global_step
    assert trainer.time_budget.stopped_early and 0 < steps < 5_000
    # stopping on the clock saves a checkpoint to resume from, as reaching max_steps would
    assert (tmp_path / f"checkpoint-{steps}" / "trainer_state.json").is_file()


def test_time_aware_schedule_follows_the_clock(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 5.0, 10.0, 20.0])
    monkeypatch.setattr("hf_dialret.training.schedule.time.perf_counter", lambda: next(clock))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = time_aware_scheduler(optimizer, "cosine", num_training_steps=1000, num_warmup_steps=0, max_seconds=10)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    # t = 0 -> 1.0; t = 5 s (half the budget) -> 0.5; t >= 10 s -> 0 although only 3 of 1000 steps ran.
    assert rates[0] == pytest.approx(1.0) and rates[1] == pytest.approx(1.0, abs=1e-4)
    assert rates[2] == pytest.approx(0.5, abs=1e-6) and rates[3] == pytest.approx(0.0, abs=1e-9)
    assert BudgetProgress(10, 1e9)(5) == 0.5  # far from the time limit: plain step progress


def test_warmup_stable_decay_holds_the_peak_then_decays_over_the_last_share_of_the_clock(monkeypatch) -> None:
    clock = iter([0.0, 4.0, 7.9, 9.0, 10.0])  # the first read starts the clock (scheduler creation)
    monkeypatch.setattr("hf_dialret.training.schedule.time.perf_counter", lambda: next(clock))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = time_aware_scheduler(optimizer, "warmup_stable_decay", num_training_steps=1000, num_warmup_steps=0,
                                     max_seconds=10, decay_ratio=0.2)
    rates = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    # stable until 80 % of the 10 s (t = 4 s, 7.9 s), cosine over the last 2 s: half way at 9 s, zero at 10 s
    assert rates[0] == pytest.approx(1.0) and rates[1] == pytest.approx(1.0)
    assert rates[2] == pytest.approx(0.5, abs=1e-6) and rates[3] == pytest.approx(0.0, abs=1e-9)


def test_warmup_stable_decay_by_steps_without_a_budget() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = time_aware_scheduler(optimizer, "warmup_stable_decay", num_training_steps=100, num_warmup_steps=10,
                                     max_seconds=math.inf, decay_ratio=0.5)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert rates[5] == pytest.approx(0.5)  # warm-up: 5 of 10 steps
    assert rates[10] == rates[50] == 1.0  # stable until half the steps
    assert rates[75] == pytest.approx(0.5) and rates[100] == pytest.approx(0.0, abs=1e-9)


def test_wsd_decay_ratio_reads_its_kwargs_and_names_what_it_cannot_take() -> None:
    assert wsd_decay_ratio({"decay_ratio": 0.3}, 1000) == 0.3
    assert wsd_decay_ratio({"num_decay_steps": 250}, 1000) == 0.25  # transformers' spelling, as a share
    assert wsd_decay_ratio(None, 1000) == 0.2
    with pytest.raises(ValueError, match=r"\['min_lr_ratio'\].*decay_ratio or num_decay_steps"):
        wsd_decay_ratio({"decay_ratio": 0.3, "min_lr_ratio": 0.1}, 1000)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"decay_ratio must be in \(0, 1\], got 0"):
        time_aware_scheduler(optimizer, "warmup_stable_decay", 10, 0, 10.0, decay_ratio=0.0)


def test_trainer_uses_the_ratio_wsd_schedule_without_a_budget(tmp_path, processor, corpus) -> None:
    trainer = DialogueRetrievalTrainer(
        model=tiny_model("mdr", processor),
        args=_args(tmp_path, max_steps=10, learning_rate=1.0, lr_scheduler_type="warmup_stable_decay",
                   lr_scheduler_kwargs={"decay_ratio": 0.5}),
        train_dataset=corpus["train"], data_collator=collator(processor), processing_class=processor,
    )
    trainer.create_optimizer()
    scheduler = trainer.create_scheduler(num_training_steps=10)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(10):
        trainer.optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    warmup = trainer.args.get_warmup_steps(10)
    assert rates[max(warmup, 1):6] == [1.0] * (6 - max(warmup, 1))  # stable through the first half
    assert rates[6] < 1.0 and rates[10] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("architecture", ["mdr", "dr"])
def test_cached_loss_training_step_equals_the_plain_step(tmp_path, processor, corpus, architecture) -> None:
    """`gradient_cache_chunk_size` changes peak memory, not the optimisation: same weights after two steps."""

    def train(output_dir, **overrides):
        trainer = DialogueRetrievalTrainer(
            model=tiny_model(architecture, processor, dropout=0.0), args=_args(output_dir, max_steps=2, **overrides),
            train_dataset=corpus["train"], data_collator=collator(processor), processing_class=processor,
        )
        trainer.model.eval()  # BatchNorm: chunk statistics would differ from whole-batch ones in train mode
        trainer.model.train = lambda mode=True: trainer.model  # keep eval mode through Trainer.training_step
        result = trainer.train()
        return trainer.model.state_dict(), result.training_loss

    plain, plain_loss = train(tmp_path / "plain")
    cached, cached_loss = train(tmp_path / "cached", gradient_cache_chunk_size=3)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert max(float((cached[name].float() - plain[name].float()).abs().max()) for name in plain) < 1e-5
    start = tiny_model(architecture, processor, dropout=0.0).state_dict()
    assert any(not torch.equal(start[name], plain[name]) for name in plain)
