"""The example scripts run end to end on tiny settings (run in-process with their own argument parsing)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

from PIL import Image

from hf_dialret.cli import main as cli

EXAMPLES = Path(__file__).parents[1] / "examples"
TINY_RUN = ["--num_train_dialogues", "64", "--num_test_dialogues", "24", "--max_steps", "2",
            "--per_device_train_batch_size", "16", "--use_cpu", "true", "--disable_tqdm", "true",
            "--evaluate_untrained", "false"]


def _run_example(name: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_serve_indexes_a_pool_then_answers_and_reloads_the_index(tmp_path, monkeypatch, capsys) -> None:
    model_dir = tmp_path / "mdr"
    assert cli(["train", "--output-dir", str(model_dir), *TINY_RUN]) == 0
    replies = tmp_path / "replies.txt"
    replies.write_text("i used red for the mug.\nthe kite has stars on it.\n\n")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for colour in ("red", "blue"):
        Image.new("RGB", (48, 48), colour).save(pictures / f"{colour}.png")
    capsys.readouterr()
    argv = ["--model-dir", str(model_dir), "--index-dir", str(tmp_path / "index"), "--top-k", "4",
            "--candidates", str(replies), str(pictures), "--turn", "hello", "--turn", "show me the red one!"]
    _run_example("serve.py", argv, monkeypatch)
    first = capsys.readouterr().out
    assert "index: 4 candidates" in first
    hits = [line for line in first.splitlines() if line.startswith("  -> ")]
    assert len(hits) == 4 and {"text", "image"} == {line.split()[2].rstrip(":") for line in hits}
    _run_example("serve.py", argv, monkeypatch)  # the saved index is loaded, not rebuilt: the same ranking
    second = capsys.readouterr().out
    assert [line for line in second.splitlines() if line.startswith("  -> ")] == hits


def test_train_dialclip_trains_saves_and_reports(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_DIALRET_CACHE", str(tmp_path / "cache"))  # the pretrained tiny CLIP's cache
    output = tmp_path / "dialclip"
    _run_example("train_dialclip.py", ["--output-dir", str(output), "--num-train-dialogues", "48",
                                       "--num-test-dialogues", "16", "--max-steps", "2", "--batch-size", "16",
                                       "--tiny-clip-pretrain-steps", "2"], monkeypatch)
    assert "multimodal R@1 (overall)" in capsys.readouterr().out
    report = json.loads((output / "eval_results.json").read_text())
    assert report["results"]["multimodal"]["overall"]["num_queries"] == 16
    from hf_dialret.retrieval.loading import load_retriever

    model, _ = load_retriever(str(output), device="cpu")  # the adapter back on its tiny CLIP
    assert type(model).__name__ == "PeftModel"
