"""Model cards and Hub pushes, with the Hub's HTTP layer mocked (no local Hub server exists)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest
from hub_helpers import EVAL_REPORT
from huggingface_hub import CommitInfo, HfApi, ModelCard

from hf_dialret.cli import main as cli
from hf_dialret.hub import load_eval_results, parameter_counts, push_to_hub, save_model_card
from hf_dialret.parameters import count_parameters
from hf_dialret.retrieval.loading import load_retriever


class FakeHub:
    """Stands in for HfApi.create_repo / create_commit; records every uploaded file's bytes."""

    def __init__(self):
        self.commits: list[dict[str, bytes]] = []
        self.repos: list[tuple[str, dict]] = []

    def create_repo(self, _api, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return mock.Mock(repo_id=repo_id)

    def create_commit(self, _api, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            with op.as_file() as handle:
                files[op.path_in_repo] = handle.read()
        self.commits.append(files)
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/abc", commit_message="m",
                          commit_description="", oid="abc", pr_url=None)


@pytest.fixture
def hub():
    fake = FakeHub()
    with mock.patch.object(HfApi, "create_repo", autospec=True, side_effect=fake.create_repo), \
         mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=fake.create_commit), \
         mock.patch.object(ModelCard, "validate", autospec=True) as validate:
        fake.validate = validate
        yield fake


def _card(text: str, tmp_path: Path) -> ModelCard:
    (tmp_path / "README.md").write_bytes(text if isinstance(text, bytes) else text.encode())
    return ModelCard.load(tmp_path / "README.md")  # the YAML round trip, as the Hub parses it


def test_card_content_metadata_and_plot(saved_mdr, tmp_path):
    model, _ = load_retriever(saved_mdr, device="cpu")
    save_model_card(model, tmp_path / "out", "me/mdr-tiny", eval_results=Path(saved_mdr) / "eval_results.json",
                    datasets=["synthetic", "someone/photochat"])
    text = (tmp_path / "out" / "README.md").read_text()
    counts = count_parameters(model)
    assert "`MultimodalDualRetrieverModel` (MDR, Multimodal Dual Retriever)" in text
    assert f"| total | {counts['total']:,} |" in text and "(100 %)" in text
    assert "| multimodal (deployable inference) | overall | 12.0 | 40.0 | 60.0 | 0.250 | 150 |" in text
    assert "| image retrieval, oracle intent | overall | 10.0 | 30.0 | 45.0 | 0.200 | 50 |" in text
    assert "accuracy 81.0, macro F1 74.0" in text and "![Recall@k](recall_at_k.png)" in text
    assert "arXiv:2506.11499" in text and 'AutoModel.from_pretrained("me/mdr-tiny")' in text
    assert "Trained on `synthetic`, `someone/photochat`." in text
    data = ModelCard.load(tmp_path / "out" / "README.md").data
    assert data.library_name == "transformers" and data.datasets == ["someone/photochat"]
    assert "MultimodalDualRetrieverModel" in data.tags and data.model_name == "mdr-tiny"
    got = {(r.metric_config, r.metric_type, (r.metric_args or {}).get("k"), r.metric_value) for r in data.eval_results}
    assert ("multimodal/overall", "recall", 10, 0.6) in got and ("text_retrieval/overall", "mrr", None, 0.33) in got
    assert ("intent/overall", "accuracy", None, 0.81) in got
    assert all(r.dataset_name == "synthetic" and r.dataset_split == "test" for r in data.eval_results)
    assert len(data.eval_results) == 3 * 4 + 3 + 2  # 3 protocols x (3 recalls + MRR), image group, intent
    png = (tmp_path / "out" / "recall_at_k.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_card_without_results_says_so(saved_mdr, tmp_path):
    model, _ = load_retriever(saved_mdr, device="cpu")
    card = save_model_card(model, tmp_path, "me/mdr-tiny")
    assert "No evaluation results were recorded" in card.text and "model-index" not in card.content
    assert "The training data was not recorded." in card.text
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


def test_flat_trainer_metrics_are_read():
    results, meta = load_eval_results({
        "eval_loss": 1.2, "epoch": 3.0,
        "eval_multimodal_overall_recall@1": 0.1, "eval_multimodal_text_recall@5": 0.4,
        "eval_multimodal_oracle_intent_image_recall@10": 0.5, "eval_text_retrieval_mrr": 0.3,
        "eval_intent_accuracy": 0.9, "eval_intent_f1_text": 0.8,
    })
    assert meta == {}
    assert results == {
        "multimodal": {"overall": {"recall@1": 0.1}, "text": {"recall@5": 0.4}},
        "multimodal_oracle_intent": {"image": {"recall@10": 0.5}},
        "text_retrieval": {"overall": {"mrr": 0.3}},
        "intent": {"overall": {"accuracy": 0.9, "f1_text": 0.8}},
    }
    nested, _ = load_eval_results(EVAL_REPORT)
    assert nested["multimodal"]["image"]["recall@5"] == 0.3 and "protocol" not in nested["multimodal"]


def test_eval_results_of_hf_dialret_train_are_read():
    # `hf-dialret train` writes the trained report under "trained", beside the untrained baseline and its settings
    untrained = {"multimodal": {"overall": {"recall@1": 0.001, "num_queries": 150}}}
    results, meta = load_eval_results({
        "architecture": "mdr", "dataset": "synthetic", "eval_split": "validation",
        "parameters": {"total": 10, "trainable": 10}, "training": {"steps": 5, "seconds": 1.0},
        "trained": EVAL_REPORT, "untrained": untrained,
    })
    assert results == load_eval_results(EVAL_REPORT)[0]
    assert meta == {"dataset": "synthetic", "split": "validation"}


def test_push_model_is_one_commit_with_our_card_last(saved_mdr, hub, tmp_path):
    model, processor = load_retriever(saved_mdr, device="cpu")
    info = push_to_hub(model, "me/mdr-tiny", processor=processor, token="hf_dummy", private=True,
                       eval_results=Path(saved_mdr) / "eval_results.json", datasets=["synthetic"])
    assert info.oid == "abc" and hub.repos == [("me/mdr-tiny", {"private": True, "exist_ok": True})]
    (files,) = hub.commits
    names = list(files)
    assert names[-1] == "README.md"
    for required in ("config.json", "model.safetensors", "modeling_dialogue_retrieval.py", "processor_config.json",
                     "tokenizer.json", "recall_at_k.png"):
        assert required in names
    card = _card(files["README.md"], tmp_path)
    assert "hf_dialret" in card.data.tags and card.data.eval_results
    hub.validate.assert_called_once()


def test_push_dialclip_adapter_names_its_base_clip(saved_adapter, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # PeftModel.save_pretrained looks up the base model's config online
    model, processor = load_retriever(saved_adapter, device="cpu")
    model.peft_config["default"].base_model_name_or_path = "openai/clip-vit-base-patch32"  # as a real adapter
    push_to_hub(model, "me/dialclip-tiny", processor=processor, token="hf_dummy", eval_results=EVAL_REPORT,
                eval_dataset="PhotoChat")
    (files,) = hub.commits
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert "model.safetensors" not in files  # the frozen CLIP is not re-uploaded
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "openai/clip-vit-base-patch32"
    card = _card(files["README.md"], tmp_path)  # ours, not the README PeftModel.save_pretrained wrote
    assert card.data.library_name == "peft" and card.data.base_model == "openai/clip-vit-base-patch32"
    assert "DialCLIP" in card.text and "arXiv" not in card.text.split("## Citation")[0]
    assert "2401.01076" in card.text and "PEFT adapter of `openai/clip-vit-base-patch32`" in card.text
    counts = parameter_counts(model)
    assert 0 < counts["trainable"] < counts["total"]  # the frozen CLIP is excluded although nothing has grad
    share = re.search(r"\| trainable \| [\d,]+ \(([\d.]+) %\)", card.text).group(1)
    assert float(share) == pytest.approx(100 * counts["trainable"] / counts["total"], rel=1e-2)
    assert "adapter: dialclip_domain_prompt" in card.text


@pytest.mark.parametrize("kind", ["model", "adapter"])
def test_usage_snippet_runs(kind, saved_mdr, saved_adapter, tmp_path, monkeypatch):
    path = saved_mdr if kind == "model" else saved_adapter
    model, _ = load_retriever(path, device="cpu")
    if kind == "adapter":  # its base is a local directory, which users of the Hub repository would not have
        with pytest.warns(UserWarning, match="is not a Hub id, so users of me/repo cannot load it"):
            card = save_model_card(model, tmp_path / "card", "me/repo")
    else:
        card = save_model_card(model, tmp_path / "card", "me/repo")
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1).replace("me/repo", path)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "usage-snippet", "exec"), {})  # noqa: S102 - the card's own code, on local files
    if kind == "model":
        assert (tmp_path / "my-index" / "index_config.json").is_file()


def test_push_command(saved_mdr, hub, tmp_path, capsys):
    out = tmp_path / "preview"
    assert cli(["push", "--model", saved_mdr, "--repo_id", "me/mdr-tiny", "--output_dir", str(out)]) == 0
    assert {"README.md", "recall_at_k.png", "config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    text = (out / "README.md").read_text()
    assert "| optimizer steps | 300 |" in text and "Results on **synthetic**" in text  # found beside the model
    assert hub.commits == []
    assert cli(["push", "--model", saved_mdr, "--repo_id", "me/mdr-tiny", "--token", "hf_dummy"]) == 0
    assert "pushed" in capsys.readouterr().out and hub.commits[0].keys() >= {"README.md", "model.safetensors"}
    assert cli(["push", "--model", str(tmp_path), "--repo_id", "me/x"]) == 1
    assert "holds no saved model" in capsys.readouterr().err


def test_push_command_reads_the_train_commands_results(saved_mdr, tmp_path):
    """`hf-dialret train` output: no trainer_state.json (no checkpoint is kept), results under "trained"."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(saved_mdr, run)
    (run / "trainer_state.json").unlink()
    (run / "eval_results.json").write_text(json.dumps({
        "dataset": "synthetic", "eval_split": "test", "trained": EVAL_REPORT,
        "untrained": {"multimodal": {"overall": {"recall@1": 0.0005}}},
        "training": {"steps": 605, "batch_size": 128, "learning_rate": 0.001, "loop_seconds": 288.0},
    }))
    out = tmp_path / "preview"
    assert cli(["push", "--model", str(run), "--repo_id", "me/mdr-tiny", "--output_dir", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    assert "| optimizer steps | 605 |" in card.text and "| batch size per device | 128 |" in card.text
    assert "untrained" not in card.text and "training" not in str(card.data.eval_results)
    recalls = {(r.metric_name, r.metric_value) for r in card.data.eval_results}
    assert ("Recall@1 (multimodal, overall)", 0.12) in recalls


def test_adapter_loads_from_a_hub_id(saved_adapter, clip_dir, tmp_path, monkeypatch):
    """A DialCLIP adapter repository (as `push` uploads it: adapter + processor) loads by its Hub id, through the
    real hub download path reading an offline cache."""
    import shutil

    import torch
    from huggingface_hub import constants

    from hf_dialret.modeling.processing_dialclip import DialCLIPProcessor

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--me--dialclip-tiny"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(saved_adapter, snapshot)
    DialCLIPProcessor.from_pretrained(clip_dir).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    model, processor = load_retriever("me/dialclip-tiny", device="cpu")
    local, _ = load_retriever(saved_adapter, device="cpu")
    assert type(model).__name__ == "PeftModel" and isinstance(processor, DialCLIPProcessor)
    assert model.peft_config["default"].base_model_name_or_path == clip_dir
    trained = {n: p for n, p in local.named_parameters() if "dialclip" in n}
    assert trained and all(torch.equal(p, trained[n]) for n, p in model.named_parameters() if n in trained)
