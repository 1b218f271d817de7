"""``hf-dialret train`` / ``evaluate``: help, clear errors, and a tiny end-to-end run whose saved model reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_dialret.cli import main as cli
from hf_dialret.commands.train import parse

TINY_RUN = ["--num_train_dialogues", "64", "--num_test_dialogues", "24", "--max_steps", "3",
            "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--use_cpu", "true",
            "--disable_tqdm", "true", "--logging_steps", "1"]


def test_help_lists_choices_and_preset(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("{dr,sdr,mdr,dialclip}", "--clip-backbone", "{synthetic,photochat,mmdialog}", "--text-backbone", "--data-dir", "tiny preset"):
        assert needle in text
    flat = " ".join(text.split())  # argparse wraps the help column
    assert "{cls,mean,attention}" in flat and "in-batch negative. (default: 64)" in flat  # defaults are shown
    assert "--no_pre_encode, --no-pre-encode Turns --pre_encode off (on by default)." in flat
    assert "(default: None)" not in flat


def test_tiny_preset_fills_only_missing_training_options() -> None:
    _, _, args = parse(["--output-dir", "x", "--learning-rate", "1e-4"])
    assert args.learning_rate == 1e-4 and args.per_device_train_batch_size == 128 and args.max_train_seconds == 300
    _, _, args = parse(["--output-dir", "x", "--architecture", "dialclip"])  # adapter on a frozen tiny CLIP
    assert args.learning_rate == 1e-2 and args.per_device_train_batch_size == 128
    _, _, args = parse(["--output-dir", "x", "--text-backbone", "bert-base-uncased", "--vision-backbone", "r50"])
    assert args.learning_rate == 5e-5 and args.max_train_seconds is None
    # one pretrained backbone is enough to keep the fine-tuning defaults (lr 1e-3 would wreck pretrained weights)
    for text, vision in (("bert-base-uncased", "tiny"), ("tiny", "microsoft/resnet-50")):
        _, _, args = parse(["--output-dir", "x", "--text-backbone", text, "--vision-backbone", vision])
        assert args.learning_rate == 5e-5 and args.max_train_seconds is None, (text, vision)


def test_tiny_preset_yields_to_epochs_and_checkpoints() -> None:
    _, _, args = parse(["--output-dir", "x", "--num_train_epochs", "1"])
    assert args.max_steps == -1 and args.num_train_epochs == 1  # not cut at the preset's 3,000 steps
    _, _, args = parse(["--output-dir", "x", "--save_steps", "2"])
    assert args.save_strategy == "steps" and args.save_steps == 2


def test_resume_interrupted_run_and_evaluate_during_training(tmp_path, capsys) -> None:
    output = tmp_path / "run"
    run = ["train", "--output-dir", str(output), "--save_steps", "2", "--evaluate_untrained", "false", *TINY_RUN]
    assert cli([*run, "--resume_from_checkpoint", "true"]) == 2  # nothing to resume yet: a clear error, no traceback
    assert "no checkpoint-* directory" in capsys.readouterr().err
    assert cli(run + ["--max_steps", "2"]) == 0  # the "interrupted" run: checkpoint-2
    assert cli(run + ["--max_steps", "4", "--resume_from_checkpoint", "true",
                      "--eval_strategy", "steps", "--eval_steps", "2"]) == 0
    training = json.loads((output / "eval_results.json").read_text())["training"]
    assert training["steps"] == 4 and training["resumed_from_step"] == 2
    assert training["examples_seen"] == 2 * 16  # this run's two steps of batch 16, not all four
    # periodic evaluation ran and its recall is in the log history of the checkpoint, as Trainer logs it
    history = json.loads((output / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    evaluated = [entry for entry in history if "eval_multimodal_overall_recall@1" in entry]
    assert [entry["step"] for entry in evaluated] == [4]


def test_open_clip_name_is_refused_before_anything_is_built(tmp_path, capsys) -> None:
    argv = ["train", "--architecture", "dialclip", "--clip-backbone", "open_clip:ViT-B-32/openai",
            "--output-dir", str(tmp_path)]
    assert cli(argv) == 2  # not a download attempt and its traceback
    assert "needs a processor: convert it once with DialCLIPModel.from_open_clip" in capsys.readouterr().err


@pytest.mark.parametrize("architecture, option, value", [
    ("dialclip", "--text-backbone", "bert-base-uncased"), ("dialclip", "--symmetric_loss", "true"),
    ("mdr", "--clip-backbone", "openai/clip-vit-base-patch32"),
])
def test_options_of_another_architecture_are_refused(architecture, option, value, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["--output-dir", "x", "--architecture", architecture, option, value])
    assert exit_info.value.code == 2
    assert f"{option.replace('-', '_').replace('__', '--')} does not apply to --architecture {architecture}" in (
        capsys.readouterr().err)


def test_on_error_reaches_the_dataset_readers(tmp_path) -> None:
    from hf_dialret.data import DataFormatError
    from hf_dialret.training.recipes import load_retrieval_dataset

    sample = Path(__file__).parents[1] / "fixtures" / "photochat" / "test_00_first20.json"
    records = json.loads(sample.read_text(encoding="utf-8"))
    del records[3]["dialogue"]
    file = tmp_path / "photochat.json"
    file.write_text(json.dumps(records))
    _, data_args, _ = parse(["--output-dir", "x", "--dataset", "photochat", "--on-error", "skip"])
    assert data_args.on_error == "skip"
    with pytest.raises(DataFormatError, match="record 3"):
        load_retrieval_dataset("photochat", str(file), splits=("test",))
    skipped = load_retrieval_dataset("photochat", str(file), splits=("test",), on_error=data_args.on_error)["test"]
    whole = load_retrieval_dataset("photochat", str(sample), splits=("test",))["test"]
    assert 0 < len(skipped) < len(whole)  # the one broken dialogue's examples are gone, the rest are kept


@pytest.mark.parametrize("value, message", [
    ('{"expert_rnk": 2}', "unknown field(s) expert_rnk; choose from domain_prompt_length"),
    ("{expert_rank: 2}", "is not valid JSON"),
    ("[2]", "must be a JSON object of fields"),
])
def test_bad_dialclip_prompt_config_is_a_usage_error(value, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["--output-dir", "x", "--architecture", "dialclip", "--dialclip-prompt-config", value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_unknown_architecture_is_rejected(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--architecture", "xyz", "--output-dir", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'xyz'" in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    assert cli(["train", "--dataset", "photochat", "--data-dir", str(missing), "--output-dir", str(tmp_path)]) == 2
    assert f"photochat data dir {str(missing)!r} does not exist" in capsys.readouterr().err
    assert cli(["train", "--dataset", "mmdialog", "--output-dir", str(tmp_path)]) == 2
    assert "--data-dir is required" in capsys.readouterr().err


def test_backbone_not_available_offline_says_what_to_pass(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = cli(["train", "--text-backbone", "no-such-org/no-such-bert", "--output-dir", str(tmp_path),
                "--num_train_dialogues", "8", "--num_test_dialogues", "8"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-org/no-such-bert" in err and "--text-backbone <local dir>" in err and "--text-backbone tiny" in err


def test_train_then_evaluate_end_to_end(tmp_path, capsys) -> None:
    from transformers import AutoModel, AutoProcessor

    import hf_dialret

    output = tmp_path / "run"
    assert cli(["train", "--output-dir", str(output), *TINY_RUN]) == 0
    printed = capsys.readouterr().out
    assert "multimodal, image responses" in printed and "top-1" in printed and "examples/s" in printed
    results = json.loads((output / "eval_results.json").read_text())
    for key in ("trained", "untrained"):
        assert {"text_retrieval", "image_retrieval", "multimodal", "intent", "pool"} <= set(results[key])
        assert {"overall", "text", "image"} <= set(results[key]["multimodal"])
    assert results["training"]["steps"] == 3 and results["parameters"]["total"] > 0

    model = AutoModel.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    assert isinstance(model, hf_dialret.MultimodalDualRetrieverModel)
    assert isinstance(processor, hf_dialret.DialogueRetrievalProcessor)
    # The tiny preset: symmetric loss on, pictures fed at 128 px.
    assert model.config.symmetric_loss is True
    assert processor.image_processor.size["shortest_edge"] == 128
    model.eval()
    with torch.no_grad():
        embeds = model(**processor(dialogues=[["hello", "can you show me the red one?"]]), return_loss=False)
    assert embeds.context_embeds.shape[-1] == model.config.projection_dim

    # Evaluating the saved model on the same pool reproduces the numbers measured right after training; the pool's
    # settings (seed, test size) come from the run's eval_results.json.
    assert results["seed"] == 42 and results["num_test_dialogues"] == 24
    assert cli(["evaluate", "--model-dir", str(output)]) == 0
    evaluated = json.loads((output / "eval_results_synthetic_test.json").read_text())["trained"]
    for group in ("overall", "text", "image"):
        assert evaluated["multimodal"][group] == pytest.approx(results["trained"]["multimodal"][group])


def test_text_only_synthetic_corpus_trains_and_evaluates(tmp_path, capsys) -> None:
    # --synthetic-image-fraction 0: every dialogue ends with a question, so the pool and every protocol are text only.
    output = tmp_path / "text-only"
    assert cli(["train", "--output-dir", str(output), "--synthetic-image-fraction", "0", *TINY_RUN]) == 0
    assert "multimodal, image responses" not in capsys.readouterr().out
    results = json.loads((output / "eval_results.json").read_text())
    assert results["synthetic_image_fraction"] == 0.0
    pool = results["trained"]["pool"]
    assert pool["num_image"] == 0 and pool["num_text"] == pool["num_candidates"] > 0 and pool["num_queries"] == 24
    assert "image_retrieval" not in results["trained"] and "image" not in results["trained"]["multimodal"]
    assert results["trained"]["multimodal"]["text"]["num_queries"] == 24

    assert cli(["evaluate", "--model-dir", str(output), "--num_test_dialogues", "24",
                "--synthetic-image-fraction", "0"]) == 0
    evaluated = json.loads((output / "eval_results_synthetic_test.json").read_text())
    assert evaluated["synthetic_image_fraction"] == 0.0
    assert evaluated["trained"]["multimodal"]["text"] == pytest.approx(results["trained"]["multimodal"]["text"])


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_image_fraction_outside_0_1_is_rejected(command, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli([command, "--output-dir" if command == "train" else "--model-dir", str(tmp_path),
             "--synthetic-image-fraction", "1.5"])
    assert exit_info.value.code == 2
    assert "--synthetic-image-fraction must be in [0, 1], got 1.5" in capsys.readouterr().err


def test_evaluate_missing_model_dir(tmp_path, capsys) -> None:
    assert cli(["evaluate", "--model-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_dialclip_saves_a_peft_adapter_naming_its_clip(tmp_path, capsys, monkeypatch) -> None:
    from peft import PeftConfig

    from hf_dialret.prompts import load_dialclip

    monkeypatch.setenv("HF_DIALRET_CACHE", str(tmp_path / "cache"))  # the pretrained tiny CLIP's cache
    output = tmp_path / "dialclip"
    argv = ["train", "--architecture", "dialclip", "--output-dir", str(output), "--tiny-clip-pretrain-steps", "2",
            "--dialclip-prompt-config", '{"expert_rank": 2, "domain_prompt_length": 3}']
    assert cli([*argv, *TINY_RUN]) == 0
    printed = capsys.readouterr().out
    assert "multimodal, image responses" in printed and "tiny CLIP pretraining (not in the training time" in printed
    results = json.loads((output / "eval_results.json").read_text())
    assert results["architecture"] == "dialclip" and results["training"]["steps"] == 3
    assert results["backbones"] == {"clip": "tiny"}
    assert results["clip_pretraining"]["arguments"]["steps"] == 2 and results["clip_pretraining"]["seconds"] > 0
    # Only the adapter is trainable and saved; it names the tiny CLIP written under the output dir.
    assert 0 < results["parameters"]["trainable"] < results["parameters"]["total"]
    config = PeftConfig.from_pretrained(output)
    assert (config.expert_rank, config.domain_prompt_length, config.context_prompt_layer) == (2, 3, 1)  # + tiny's
    assert config.peft_type == "DIALCLIP" and (tmp_path / "dialclip" / "tiny-clip").samefile(config.base_model_name_or_path)
    model = load_dialclip(str(output))
    assert type(model.get_base_model()).__name__ == "DialCLIPModel"
    # `evaluate` loads the adapter onto its base CLIP (AutoModel alone cannot) and reproduces the run's numbers.
    assert cli(["evaluate", "--model-dir", str(output)]) == 0
    evaluated = json.loads((output / "eval_results_synthetic_test.json").read_text())["trained"]
    assert evaluated["multimodal"]["overall"] == pytest.approx(results["trained"]["multimodal"]["overall"])


def test_torchrun_on_cpu_trains_one_model_over_both_processes(tmp_path, torchrun) -> None:
    """``torchrun -m hf_dialret.cli train`` without --use_cpu: gloo data parallelism, shared files written once."""
    output = tmp_path / "ddp"
    at = TINY_RUN.index("--use_cpu")
    run_args = TINY_RUN[:at] + TINY_RUN[at + 2:]
    completed = torchrun("-m", "hf_dialret.cli", "train", "--output-dir", str(output), "--evaluate_untrained", "false",
                         *run_args)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in completed.stderr
    results = json.loads((output / "eval_results.json").read_text())
    # 3 steps x 16 examples per process x 2 processes: one model trained on both processes' batches.
    assert results["training"]["steps"] == 3 and results["training"]["examples_seen"] == 3 * 16 * 2
    assert results["trained"]["multimodal"]["overall"]["num_queries"] == 24
