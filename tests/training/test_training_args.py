"""The default optimizer of DialogueRetrievalTrainingArguments: fused AdamW, the same update as plain AdamW."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.training_args import OptimizerNames

from hf_dialret.training import DialogueRetrievalTrainer, DialogueRetrievalTrainingArguments


def test_the_default_optimizer_is_fused_adamw(tmp_path, tiny_config):
    import hf_dialret

    args = DialogueRetrievalTrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert args.optim == OptimizerNames.ADAMW_TORCH_FUSED
    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig))
    optimizer = DialogueRetrievalTrainer(model=model, args=args).create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    # weight decay on weights only, not on biases and LayerNorm (the Trainer's grouping is kept)
    assert sorted(group["weight_decay"] for group in optimizer.param_groups) == [0.0, args.weight_decay]


@pytest.mark.parametrize("steps", [1, 3])
def test_fused_adamw_gives_the_update_of_plain_adamw(tmp_path, tiny_config, tiny_batch, steps):
    """Same weights, same gradients: the Trainer's fused optimizer and a per-parameter AdamW with the same groups and
    hyper-parameters end at the same weights (bias correction, decoupled decay and the moments included)."""
    import hf_dialret

    torch.manual_seed(0)
    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig)).train()
    reference = copy.deepcopy(model)
    initial = {name: param.detach().clone() for name, param in model.named_parameters()}
    args = DialogueRetrievalTrainingArguments(output_dir=str(tmp_path), report_to="none", learning_rate=1e-2)
    fused = DialogueRetrievalTrainer(model=model, args=args).create_optimizer()
    name_of = {id(param): name for name, param in model.named_parameters()}
    twin = dict(reference.named_parameters())
    hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad")  # not "fused"/"foreach": those would be copied too
    plain = torch.optim.AdamW(
        [{"params": [twin[name_of[id(p)]] for p in group["params"]], **{k: group[k] for k in hyper}}
         for group in fused.param_groups],
        foreach=False, fused=False,
    )
    assert all(not group["fused"] and not group["foreach"] for group in plain.param_groups)
    for _ in range(steps):
        # One backward, its gradients handed to both: the optimizers are compared on the very same inputs (two
        # backwards would differ by rounding, which Adam's normalised update amplifies for near-zero gradients).
        model(**tiny_batch, return_loss=True).loss.backward()
        for name, param in model.named_parameters():
            twin[name].grad = None if param.grad is None else param.grad.clone()
        for optimizer in (fused, plain):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for (name, got), want in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    # not a vacuous comparison: the step moved the weights by far more than the tolerance
    assert (model.query_projection.weight - initial["query_projection.weight"]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), ({"WORLD_SIZE": "1"}, False), ({"WORLD_SIZE": "2"}, True), ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
     ({"WORLD_SIZE": "two"}, False)],
)
def test_multi_process_launch_is_read_from_the_launchers_variables(monkeypatch, env, expected):
    from hf_dialret.training import training_args

    for name in training_args.LAUNCHER_WORLD_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert training_args._launched_multi_process() is expected


@pytest.mark.parametrize(("multi_process", "accelerator", "use_cpu"), [(True, False, True), (True, True, False),
                                                                       (False, False, False)])
def test_use_cpu_turns_on_for_a_multi_process_launch_without_an_accelerator(
    tmp_path, monkeypatch, multi_process, accelerator, use_cpu
):
    # Without use_cpu, accelerate leaves a CPU torchrun launch undistributed: every process would train alone.
    from hf_dialret.training import training_args

    monkeypatch.setattr(training_args, "_launched_multi_process", lambda: multi_process)
    monkeypatch.setattr(training_args, "_has_accelerator", lambda: accelerator)
    args = DialogueRetrievalTrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert args.use_cpu is use_cpu
