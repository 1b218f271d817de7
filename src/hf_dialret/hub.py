"""Model cards and Hub pushes for every hf_dialret retriever and for DialCLIP PEFT adapters.

The card is generated from what is known about a checkpoint: the architecture and its backbones (from the config),
parameter counts and the trainable fraction (:func:`hf_dialret.parameters.count_parameters`), the training data
(given by the caller), the recall table of ``eval_results.json`` as ``model-index`` results, a recall@k plot, a usage
snippet and the citation of the paper.

:func:`push_to_hub` uploads everything in **one commit**: the model's own ``save_pretrained`` output, the processor,
the plot and, written last, the custom ``README.md``. Writing the card last matters: ``PeftModel.save_pretrained``
writes its own README (``library_name: peft``) and ``transformers``' ``push_to_hub`` replaces README with a generic
card, so pushing the model with those methods after the card would lose it.

Accepted ``eval_results`` (a dict or a JSON file), see :func:`load_eval_results`:

- the nested report of ``hf_dialret.training.evaluation.retrieval_report``: ``{protocol: {group: {metric: value}}}``
  or ``{protocol: {metric: value}}`` (``text_retrieval``, ``multimodal``, ``intent``...), optionally wrapped as
  ``{"dataset": ..., "split": ..., "results": {...}}``;
- the ``eval_results.json`` that ``hf-dialret train`` / ``evaluate`` write: the report under ``"trained"``, the
  split under ``"eval_split"`` (the untrained baseline and the run's settings are not results of the model);
- the flat metrics that ``Trainer`` writes: ``{"eval_multimodal_overall_recall@1": 0.31, ...}``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData

from .hub_template import ARCHITECTURES, CITATIONS, MODEL_CARD_TEMPLATE, USAGE_ADAPTER, USAGE_MODEL
from .parameters import count_parameters

PLOT_FILE = "recall_at_k.png"
TASK_TYPE = "dialogue-response-retrieval"
#: Longest first, so that "multimodal_oracle_intent_..." is not read as "multimodal" + "oracle_intent_...".
PROTOCOLS = ("multimodal_oracle_intent", "text_retrieval", "image_retrieval", "multimodal", "intent")
PROTOCOL_TITLES = {
    "multimodal": "multimodal (deployable inference)",
    "multimodal_oracle_intent": "multimodal, oracle intent",
    "text_retrieval": "text retrieval, oracle intent",
    "image_retrieval": "image retrieval, oracle intent",
}
GROUPS = ("overall", "text", "image")
_RECALL = re.compile(r"^recall@(\d+)$")
Results = dict[str, dict[str, dict[str, float]]]


# ------------------------------------------------------------------------------------------------ eval results
def load_eval_results(source: str | os.PathLike[str] | dict[str, Any]) -> tuple[Results, dict[str, str]]:
    """Normalise evaluation results to ``{protocol: {group: {metric: value}}}`` and metadata (dataset, split)."""
    if not isinstance(source, dict):
        with open(source, encoding="utf-8") as handle:
            source = json.load(handle)
        if not isinstance(source, dict):
            raise ValueError("eval results must be a JSON object (protocol -> metrics)")
    meta = {key: str(source[key]) for key in ("dataset", "split") if isinstance(source.get(key), str)}
    if "split" not in meta and isinstance(source.get("eval_split"), str):
        meta["split"] = source["eval_split"]
    if isinstance(source.get("trained"), dict):  # eval_results.json of `hf-dialret train` / `evaluate`
        data = source["trained"]
    else:
        data = source["results"] if isinstance(source.get("results"), dict) else source
    results: Results = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in PROTOCOLS:  # e.g. the run's "training" or "parameters" block
                continue
            nested = {g: v for g, v in value.items() if isinstance(v, dict)}
            groups = nested or {"overall": value}
            for group, metrics in groups.items():
                numeric = {m: float(v) for m, v in metrics.items() if _is_number(v)}
                if numeric:
                    results.setdefault(key, {}).setdefault(group, {}).update(numeric)
        elif _is_number(value):
            parsed = _parse_flat_key(key)
            if parsed is not None:
                protocol, group, metric = parsed
                results.setdefault(protocol, {}).setdefault(group, {})[metric] = float(value)
    return results, meta


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_flat_key(key: str) -> tuple[str, str, str] | None:
    """``eval_multimodal_text_recall@5`` -> ("multimodal", "text", "recall@5"); None for other keys (loss, epoch)."""
    name = re.sub(r"^(eval|test|validation|predict)_", "", key)
    for protocol in PROTOCOLS:
        if name.startswith(protocol + "_"):
            rest = name[len(protocol) + 1 :]
            for group in GROUPS:
                if rest.startswith(group + "_"):
                    return protocol, group, rest[len(group) + 1 :]
            return protocol, "overall", rest
    return None


def _recall_ks(metrics: dict[str, float]) -> list[int]:
    return sorted(int(m.group(1)) for m in map(_RECALL.match, metrics) if m)


def results_table(results: Results) -> str:
    """Markdown recall table: one row per protocol and response group; intent accuracy / F1 below it."""
    ks = sorted({k for groups in results.values() for metrics in groups.values() for k in _recall_ks(metrics)})
    lines = ["| protocol | responses | " + " | ".join(f"R@{k}" for k in ks) + " | MRR | queries |",
             "|---|---|" + "---:|" * (len(ks) + 2)]
    for protocol, groups in results.items():
        for group, metrics in groups.items():
            if not _recall_ks(metrics):
                continue
            cells = [f"{100 * metrics[f'recall@{k}']:.1f}" if f"recall@{k}" in metrics else "–" for k in ks]
            mrr = f"{metrics['mrr']:.3f}" if "mrr" in metrics else "–"
            queries = str(int(metrics["num_queries"])) if "num_queries" in metrics else "–"
            lines.append(f"| {PROTOCOL_TITLES.get(protocol, protocol)} | {group} | " + " | ".join(cells)
                         + f" | {mrr} | {queries} |")
    intent = results.get("intent", {}).get("overall", {})
    if "accuracy" in intent:
        f1 = f", macro F1 {100 * intent['macro_f1']:.1f}" if "macro_f1" in intent else ""
        lines += ["", f"Response-modality intent: accuracy {100 * intent['accuracy']:.1f}{f1} (%)."]
    return "\n".join(lines) if len(lines) > 2 else ""


def eval_results_to_model_index(results: Results, dataset: str, split: str) -> list[EvalResult]:
    """One ``EvalResult`` per recall@k / MRR of each protocol and group, plus intent accuracy and macro F1."""
    dataset_type = re.sub(r"[^a-z0-9_.-]+", "-", dataset.lower()).strip("-") or "custom"
    out: list[EvalResult] = []
    for protocol, groups in results.items():
        for group, metrics in groups.items():
            for metric, value in metrics.items():
                match = _RECALL.match(metric)
                if match:
                    kwargs: dict[str, Any] = {"metric_type": "recall", "metric_args": {"k": int(match.group(1))},
                                              "metric_name": f"Recall@{match.group(1)} ({protocol}, {group})"}
                elif metric in ("mrr", "accuracy", "macro_f1"):
                    kwargs = {"metric_type": metric, "metric_name": f"{metric} ({protocol}, {group})"}
                else:
                    continue
                out.append(EvalResult(
                    task_type=TASK_TYPE, task_name="Dialogue response retrieval", dataset_type=dataset_type,
                    dataset_name=dataset, dataset_split=split, metric_value=float(value),
                    metric_config=f"{protocol}/{group}", **kwargs,
                ))
    return out


def plot_recall_at_k(results: Results, path: str | os.PathLike[str], title: str = "Recall@k") -> Path | None:
    """Line plot of recall@k per protocol (overall and per-modality retrieval); None when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in any process

    series = [(f"{PROTOCOL_TITLES.get(p, p)}" + ("" if g == "overall" else f" ({g})"), m)
              for p, groups in results.items() for g, m in groups.items()
              if _recall_ks(m) and (g == "overall" or p not in ("multimodal", "multimodal_oracle_intent"))]
    if not series:
        return None
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, metrics in series:
        ks = _recall_ks(metrics)
        axes.plot(ks, [100 * metrics[f"recall@{k}"] for k in ks], marker="o", label=label)
    axes.set(xlabel="k", ylabel="recall@k (%)", title=title, ylim=(0, 100))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return Path(path)


# ------------------------------------------------------------------------------------------------ model card
def _is_adapter(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _looks_like_hub_id(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def _backbones(config: Any) -> list[dict[str, str]]:
    out = []
    for attr in sorted(vars(config)):
        sub = getattr(config, attr, None)
        if attr.endswith("_config") and hasattr(sub, "model_type") and hasattr(sub, "to_dict"):
            name = getattr(config, "clip_backbone", None) if attr == "clip_config" else None
            name = name or getattr(sub, "_name_or_path", "") or "built from its config"
            out.append({"role": attr[: -len("_config")].replace("_", " "), "name": name, "model_type": sub.model_type})
    return out


def parameter_counts(model: Any) -> dict[str, Any]:
    """:func:`count_parameters`, except for PEFT adapters: there "trainable" means the adapter's own parameters.

    A loaded adapter is frozen (``requires_grad`` is False everywhere), so counting gradients would report 0 %;
    the adapter's parameters are those under the tuner's name prefix (e.g. ``dialclip_``) or in ``modules_to_save``.
    """
    counts = count_parameters(model)
    if not _is_adapter(model):
        return counts
    prefix = getattr(model.base_model, "prefix", None) or "\0"
    components: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = next((p for p in name.split(".") if p.startswith(prefix) or p == "modules_to_save"), None)
        if part is not None:
            components[f"adapter: {part}"] = components.get(f"adapter: {part}", 0) + param.numel()
    adapter = sum(components.values())
    return {"total": counts["total"], "trainable": adapter,
            "components": {"frozen base model": counts["total"] - adapter, **components}}


def build_model_card(
    model: Any,
    repo_id: str,
    *,
    eval_results: str | os.PathLike[str] | dict[str, Any] | None = None,
    eval_dataset: str | None = None,
    eval_split: str | None = None,
    datasets: list[str] | None = None,
    training_data: str | None = None,
    training_details: dict[str, Any] | None = None,
    license: str = "apache-2.0",
    plot_file: str | None = PLOT_FILE,
) -> ModelCard:
    """Build the card of ``model`` (a retriever or a DialCLIP ``PeftModel``) for the repository ``repo_id``.

    ``datasets``: names of the training datasets (Hub ids among them are linked in the metadata);
    ``training_data``: free text describing them; ``plot_file``: name of the recall plot in the repository (None:
    no plot). Evaluation results are optional; without them the card says so and has no ``model-index``.
    """
    adapter = _is_adapter(model)
    base = model.get_base_model() if adapter else model
    architecture = type(base).__name__
    title, description, retrieval = ARCHITECTURES.get(architecture, (architecture, "", "see the documentation."))
    config = base.config
    base_model = None
    if adapter:
        peft_config = model.peft_config[getattr(model, "active_adapter", "default")]
        base_model = peft_config.base_model_name_or_path
        if not _looks_like_hub_id(base_model):
            warnings.warn(
                f"the DialCLIP adapter's base model {base_model!r} is not a Hub id, so users of {repo_id} cannot "
                "load it with load_retriever (which fetches the base the adapter names); train the adapter on a "
                "CLIP pushed to the Hub, or tell them to pass load_dialclip(..., clip_backbone=<their copy>)",
                stacklevel=2,
            )
    results, meta = load_eval_results(eval_results) if eval_results is not None else ({}, {})
    dataset = eval_dataset or meta.get("dataset") or "custom"
    split = eval_split or meta.get("split") or "test"
    table = results_table(results)
    counts = parameter_counts(model)
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="peft" if adapter else "transformers",
        license=license,
        base_model=base_model if _looks_like_hub_id(base_model) else None,
        datasets=[d for d in datasets or [] if "/" in d] or None,
        tags=["hf_dialret", TASK_TYPE, "multimodal", architecture] + (["dialclip", "peft"] if adapter else []),
        eval_results=eval_results_to_model_index(results, dataset, split) or None,
    )
    names = ", ".join(f"`{d}`" for d in datasets or [])
    usage = (USAGE_ADAPTER if adapter else USAGE_MODEL).format(repo_id=repo_id, base_model=base_model)
    return ModelCard.from_template(
        card_data,
        template_str=MODEL_CARD_TEMPLATE,
        model_name=model_name,
        summary=f"{title}, trained for multimodal dialogue response retrieval"
        + (f", as a PEFT adapter of `{base_model}`." if adapter else "."),
        architecture=architecture,
        architecture_title=title,
        architecture_description=description,
        retrieval_mode=retrieval,
        dim=getattr(config, "projection_dim", "unknown"),
        base_model=base_model,
        backbones=_backbones(config),
        parameters=counts,
        trainable_percent=f"{100 * counts['trainable'] / max(counts['total'], 1):.3g} %",
        training_data=training_data or (f"Trained on {names}." if names else "The training data was not recorded."),
        training_details=training_details or {},
        results_table=table,
        eval_dataset=dataset,
        eval_split=split,
        plot_file=plot_file if table and plot_file else None,
        usage=usage,
        citation=CITATIONS.get(architecture, ""),
    )


def save_model_card(model: Any, directory: str | os.PathLike[str], repo_id: str, **card_kwargs: Any) -> ModelCard:
    """Write ``README.md`` (and, when there are results, the recall plot) into ``directory``; returns the card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plot_file = card_kwargs.pop("plot_file", PLOT_FILE)
    if card_kwargs.get("eval_results") is not None:
        results, meta = load_eval_results(card_kwargs["eval_results"])
        card_kwargs["eval_results"] = {"results": results, **meta}  # read the file once
        title = f"{repo_id.split('/')[-1]}: recall@k"
        if not plot_file or plot_recall_at_k(results, directory / plot_file, title=title) is None:
            plot_file = None
    card = build_model_card(model, repo_id, plot_file=plot_file, **card_kwargs)
    card.save(directory / "README.md")
    return card


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    processor: Any = None,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    validate_card: bool = True,
    **card_kwargs: Any,
) -> CommitInfo:
    """Push ``model`` (any retriever, or a DialCLIP ``PeftModel`` adapter), its processor and its card in one commit.

    ``card_kwargs`` go to :func:`build_model_card` (``eval_results``, ``datasets``, ``training_data``...). With
    ``validate_card`` the card's metadata is checked by the Hub before anything is uploaded.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="hf_dialret-push-") as tmp:
        model.save_pretrained(tmp)  # PeftModel writes its own README.md here; ours replaces it below
        if processor is not None:
            processor.save_pretrained(tmp)
        card = save_model_card(model, tmp, repo_id, **card_kwargs)  # last: replaces PeftModel's README
        if validate_card:
            card.validate()
        kind = "DialCLIP adapter" if _is_adapter(model) else type(model).__name__
        # One explicit commit (not upload_folder, which may split large folders into several commits): the repo
        # never shows weights without their card. README.md goes last, as the card is the last thing written.
        files = sorted((p for p in Path(tmp).rglob("*") if p.is_file()), key=lambda p: (p.name == "README.md", p))
        operations = [CommitOperationAdd(path_in_repo=p.relative_to(tmp).as_posix(), path_or_fileobj=str(p))
                      for p in files]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            revision=revision,
            commit_message=commit_message or f"Upload {kind} with hf_dialret model card",
        )
