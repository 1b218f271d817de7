"""``hf-dialret train``: train a retriever, evaluate it (untrained and trained) on every protocol, save it.

With no options this is the main job: MDR with tiny from-scratch backbones on the embedded synthetic corpus, a
5-minute training budget, then the recall table and one example retrieval.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser

from ..data.synthetic import DEFAULT_IMAGE_FRACTION
from ..modeling.configuration_dialogue_retrieval import POOLING_MODES
from ..training.recipes import ARCHITECTURE_CLASSES, DATASETS, TINY, check_clip_backbone
from ..training.training_args import DialogueRetrievalTrainingArguments

logger = logging.getLogger("hf_dialret.train")

DESCRIPTION = "Train a dialogue response retriever (DR, SDR, MDR, DialCLIP), evaluate it on every protocol and save it."
EPILOG = """\
defaults of the tiny preset, applied to the training options you do not pass when both --text-backbone and
--vision-backbone are tiny (training from scratch; for DialCLIP: --clip-backbone tiny):
  --per_device_train_batch_size 128 --learning_rate 1e-3 (DialCLIP: 1e-2) --warmup_steps 0.1
  --lr_scheduler_type cosine --max_steps 3000 --max_train_seconds 300 --logging_steps 20 --save_strategy no.
The tiny preset also turns on --symmetric_loss (DR/SDR/MDR) and feeds the pictures to the ResNet at 128 px.
The time budget covers pre-encoding and the training loop; the learning rate decays over whichever of
max_steps / max_train_seconds ends first (--max_train_seconds 0 lifts the budget). --num_train_epochs drops the
preset's --max_steps, --save_steps its --save_strategy no.
With a pretrained backbone (Hub id or local dir, e.g. bert-base-uncased, microsoft/resnet-50) the training
options keep the defaults shown above (fine-tuning: lr 5e-5, batch 64, 3 epochs).

examples:
  hf-dialret train --output-dir runs/mdr-synthetic
  hf-dialret train --architecture dr --output-dir runs/dr-synthetic
  hf-dialret train --architecture dialclip --output-dir runs/dialclip-synthetic   # tiny CLIP + prompt adapter
  hf-dialret train --architecture dialclip --clip-backbone openai/clip-vit-base-patch32 --output-dir runs/dialclip
  hf-dialret train --dataset photochat --data-dir data/photochat --image-dir data/photochat/images \\
      --text-backbone bert-base-uncased --vision-backbone microsoft/resnet-50 --output-dir runs/photochat
"""

TINY_PRESET: dict[str, Any] = {
    "per_device_train_batch_size": 128,
    "learning_rate": 1e-3,
    "warmup_steps": 0.1,
    "lr_scheduler_type": "cosine",
    "max_steps": 3000,
    "max_train_seconds": 300.0,
    "logging_steps": 20,
    "save_strategy": "no",
}

#: Model options of the dual retrievers (DR/SDR/MDR) that DialCLIP has no use for, and DialCLIP's own.
NOT_FOR_DIALCLIP = frozenset({"text_backbone", "vision_backbone", "projection_dim", "pooling", "logit_scale_init_value",
                              "symmetric_loss"})
ONLY_FOR_DIALCLIP = frozenset({"clip_backbone", "tiny_clip_pretrain_steps", "dialclip_prompt_config"})
#: The DialCLIPPromptConfig fields --dialclip-prompt-config may set (the adapter's shape, not PEFT's bookkeeping).
PROMPT_FIELDS = ("domain_prompt_length", "context_prompt_length", "context_prompt_layer", "context_bottleneck",
                 "expert_rank", "prompt_init_std")

#: DialCLIP trains only its small adapter on frozen towers: a larger learning rate (measured on the pretrained tiny
#: CLIP, 200 steps: 3e-3, 1e-2 and 2e-2 give multimodal R@10 0.40, 0.45, 0.45 on a 300-dialogue pool).
TINY_DIALCLIP_PRESET: dict[str, Any] = {"learning_rate": 1e-2}


@dataclass
class ModelArguments:
    architecture: str = field(
        default="mdr",
        metadata={
            "help": "dr: Dual Retriever (one context encoder per response modality + intent classifier); sdr: Shared "
            "Dual Retriever (one shared context encoder + intent head); mdr: Multimodal Dual Retriever (one "
            "joint pool of texts and images, no intent step); dialclip: frozen CLIP + DialCLIP prompt adapter "
            "(PEFT), backbone from --clip-backbone.",
            "choices": list(ARCHITECTURE_CLASSES),
        },
    )
    text_backbone: str = field(
        default=TINY,
        metadata={"help": "Text encoder: a Hub id (e.g. bert-base-uncased) or a local directory; `tiny` builds a "
                  "2-layer BERT in code whose vocabulary covers the synthetic corpus."},
    )
    vision_backbone: str = field(
        default=TINY,
        metadata={"help": "Image encoder: a Hub id (e.g. microsoft/resnet-50) or a local directory; `tiny` builds a "
                  "small ResNet in code."},
    )
    clip_backbone: str = field(
        default=TINY,
        metadata={"help": "DialCLIP only: a CLIP Hub id (e.g. openai/clip-vit-base-patch32) or a local CLIP directory "
                  "with its processor; `tiny` builds a 2-layer CLIP in code and first pretrains it contrastively "
                  "(CLIP-style image-caption InfoNCE) on captioned synthetic pictures, never on dialogues (600 steps: "
                  "70-100 s on one core of a busy 2-core machine), cached in $HF_DIALRET_CACHE (default "
                  "~/.cache/hf_dialret) and reported apart from the training budget."},
    )
    tiny_clip_pretrain_steps: int | None = field(
        default=None,
        metadata={"help": "DialCLIP with --clip-backbone tiny: contrastive pretraining steps of the tiny CLIP "
                  "(default: pretrain_tiny_clip's, 600)."},
    )
    dialclip_prompt_config: str | None = field(
        default=None,
        metadata={"help": "DialCLIP only: JSON overrides of the adapter's DialCLIPPromptConfig, e.g. "
                  "'{\"domain_prompt_length\": 2, \"context_prompt_length\": 8, \"expert_rank\": 2}' (fields: "
                  f"{', '.join(PROMPT_FIELDS)}). Default: the paper's settings (--clip-backbone tiny: context prompts "
                  "from layer 1 of its 2)."},
    )
    projection_dim: int = field(default=128, metadata={"help": "Width of the shared retrieval space."})
    pooling: str | None = field(
        default=None,
        metadata={"help": "Text pooling: cls, mean or attention (a learned query over the tokens). Default: mean "
                  "for the tiny from-scratch preset (a random encoder's [CLS] vector is nearly input-independent, "
                  "which stalls training), cls for pretrained backbones (BERT's [CLS] is trained).",
                  "choices": list(POOLING_MODES)},
    )
    logit_scale_init_value: float = field(
        default=2.6592, metadata={"help": "Initial log inverse temperature (CLIP: log(1/0.07) = 2.6592; max log(100))."}
    )
    symmetric_loss: bool | None = field(
        default=None,
        metadata={"help": "DR/SDR/MDR: also train each response to pick its own context (CLIP's two-direction "
                  "InfoNCE). Default: on for the tiny from-scratch preset (it learns faster: +0.02 R@1 at equal "
                  "steps), off for pretrained backbones (the paper's one-direction loss)."},
    )


@dataclass
class DataArguments:
    dataset: str = field(
        default="synthetic",
        metadata={"help": "synthetic: generated offline (default); photochat / mmdialog: read from --data-dir.",
                  "choices": list(DATASETS)},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the PhotoChat / MMDialog files."})
    image_dir: str | None = field(default=None, metadata={"help": "Folder of the photos (PhotoChat; MMDialog: "
                                  "default beside conversations.json)."})
    on_error: str = field(
        default="raise",
        metadata={"help": "PhotoChat / MMDialog: a malformed record stops the run with an error naming its file, "
                  "record and field (raise), or is skipped and counted in the log (skip). A JSON *array* that is "
                  "not valid JSON stops either way (nothing after the break can be located).",
                  "choices": ["raise", "skip"]},
    )
    num_train_dialogues: int = field(default=20000, metadata={"help": "Synthetic corpus: training dialogues."})
    num_test_dialogues: int = field(default=2000, metadata={"help": "Synthetic corpus: test dialogues (the test "
                                    "pool is their deduplicated responses: about 1,100 texts and images)."})
    synthetic_image_fraction: float = field(
        default=DEFAULT_IMAGE_FRACTION,
        metadata={"help": "Synthetic corpus: share of dialogues that end with a picture request (0: text replies "
                  "only, e.g. to study the context encoder's text side alone; 1: pictures only)."},
    )
    eval_split: str = field(default="test", metadata={"help": "Split evaluated before and after training.",
                            "choices": ["validation", "test"]})
    max_eval_examples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    pre_encode: bool = field(default=True, metadata={"help": "Tokenise / process the training set once instead of "
                             "every epoch (faster on CPU; costs memory)."})
    evaluate_untrained: bool = field(default=True, metadata={"help": "Also evaluate the untrained model (the "
                                     "chance-level reference in eval_results.json)."})


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's line breaks and shows the options' defaults, as HfArgumentParser's own formatter does
    (except an unset ``None``, whose meaning the help text says)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        negative = action.option_strings[0] if action.option_strings else ""
        if negative.startswith("--no_") and isinstance(action, argparse._StoreFalseAction):
            # HfArgumentParser gives the --no_X switch of a boolean that defaults to True the help of --X
            return f"Turns --{negative[len('--no_'):]} off (on by default)."
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse(argv: list[str]) -> tuple[ModelArguments, DataArguments, DialogueRetrievalTrainingArguments]:
    """Parse ``argv``; the tiny preset fills the training options that were not given explicitly."""
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, DialogueRetrievalTrainingArguments),
        prog="hf-dialret train", usage="hf-dialret train [--architecture {dr,sdr,mdr,dialclip}] [--dataset ...] [options]",
        description=DESCRIPTION, epilog=EPILOG,
    )
    parser.formatter_class = HelpFormatter
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(argv)
    check_synthetic_image_fraction(parser, data_args.synthetic_image_fraction)
    dialclip = model_args.architecture == "dialclip"
    given = {arg.split("=", 1)[0].lstrip("-").replace("-", "_") for arg in argv if arg.startswith("--")}
    ignored = sorted(given & (NOT_FOR_DIALCLIP if dialclip else ONLY_FOR_DIALCLIP))
    if ignored:  # an option the run would silently ignore is a mistake worth stopping for
        names = ", ".join("--" + name for name in ignored)
        why = "DialCLIP trains a prompt adapter on a frozen CLIP: see --clip-backbone" if dialclip else "DialCLIP only"
        verb = "does" if len(ignored) == 1 else "do"
        parser.error(f"{names} {verb} not apply to --architecture {model_args.architecture} ({why})")
    dialclip_prompt_overrides(parser, model_args.dialclip_prompt_config)  # a usage error now, not after the data
    if uses_tiny_preset(model_args):
        defaults = {**TINY_PRESET, **(TINY_DIALCLIP_PRESET if dialclip else {})}
        if "num_train_epochs" in given:  # the user's epochs decide the length, not the preset's max_steps
            defaults.pop("max_steps")
        if given & {"save_steps", "save_total_limit"}:  # asking for checkpoints turns the preset's "no saving" off
            defaults.pop("save_strategy")
        preset = [item for key, value in defaults.items() if key not in given for item in (f"--{key}", str(value))]
        if preset:  # re-parse with the preset in front, so the user's own values still win
            model_args, data_args, training_args = parser.parse_args_into_dataclasses(preset + argv)
    return model_args, data_args, training_args


def uses_tiny_preset(model_args: ModelArguments) -> bool:
    """The tiny preset's training options suit training from scratch only: every backbone must be ``tiny``.

    With one pretrained backbone (say bert-base-uncased beside a tiny ResNet) its learning rate of 1e-3 would wreck
    the pretrained weights, so such a run keeps the Trainer's fine-tuning defaults.
    """
    if model_args.architecture == "dialclip":
        return model_args.clip_backbone == TINY
    return model_args.text_backbone == TINY and model_args.vision_backbone == TINY


def dialclip_prompt_overrides(parser, text: str | None) -> dict[str, Any]:
    """``--dialclip-prompt-config`` as a dict of DialCLIPPromptConfig fields (a usage error names what is wrong)."""
    if not text:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        parser.error(f"--dialclip-prompt-config is not valid JSON ({error}): {text!r}")
    if not isinstance(overrides, dict):
        parser.error(f"--dialclip-prompt-config must be a JSON object of fields, got {text!r}")
    unknown = sorted(set(overrides) - set(PROMPT_FIELDS))
    if unknown:
        parser.error(f"--dialclip-prompt-config: unknown field(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(PROMPT_FIELDS)}")
    return overrides


def resume_checkpoint(value: str | None, output_dir: str) -> str | None:
    """The checkpoint directory ``--resume_from_checkpoint`` names (``true`` / ``last``: the newest ``checkpoint-*``
    in ``--output-dir``), or None for a fresh run; a clear error before any data is built, not the Trainer's
    traceback after it."""
    from transformers.trainer_utils import get_last_checkpoint

    if value is None:
        return None
    if value.lower() in ("true", "last"):
        newest = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if newest is None:
            raise FileNotFoundError(f"--resume_from_checkpoint {value}: no checkpoint-* directory in {output_dir!r} "
                                    "to resume from (save some with --save_strategy steps --save_steps N)")
        return newest
    if not os.path.isdir(value):
        raise FileNotFoundError(f"--resume_from_checkpoint {value!r}: no such checkpoint directory (pass one of the "
                                "checkpoint-* folders of a run, or true for the newest in --output-dir)")
    return value


def _checkpoint_step(checkpoint: str | None) -> int:
    """The optimizer step a run resumes from (0 for a fresh run)."""
    state = os.path.join(checkpoint, "trainer_state.json") if checkpoint else None
    if not state or not os.path.isfile(state):
        return 0
    with open(state, encoding="utf-8") as handle:
        return int(json.load(handle).get("global_step", 0))


def check_synthetic_image_fraction(parser, fraction: float) -> None:
    """A usage error (exit 2, before any data is generated) for a share outside [0, 1]; train and evaluate both ask."""
    if not 0.0 <= fraction <= 1.0:
        parser.error(f"--synthetic-image-fraction must be in [0, 1], got {fraction}")


def fail(message: str) -> int:
    print(f"hf-dialret: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------------- reporting
def recall_table(trained: dict[str, Any], untrained: dict[str, Any] | None = None) -> str:
    """A plain-text table of every protocol (recall as fractions), with the untrained R@1 beside it."""
    rows = [("multimodal, all queries", ("multimodal", "overall")),
            ("multimodal, text responses", ("multimodal", "text")),
            ("multimodal, image responses", ("multimodal", "image")),
            ("text retrieval (oracle intent)", ("text_retrieval",)),
            ("image retrieval (oracle intent)", ("image_retrieval",)),
            ("multimodal, oracle intent", ("multimodal_oracle_intent", "overall"))]
    ks = sorted(int(key.split("@")[1]) for key in trained["multimodal"]["overall"] if key.startswith("recall@"))
    header = f"{'protocol':34}{'queries':>8}" + "".join(f"{'R@' + str(k):>8}" for k in ks) + f"{'MRR':>8}"
    header += f"{'untrained R@1':>15}" if untrained else ""
    lines = [f"multimodal protocol: {trained['multimodal']['protocol']}; pool: {_pool_text(trained['pool'])}", header]
    for title, path in rows:
        node, base = _get(trained, path), _get(untrained, path) if untrained else None
        if node is None:
            continue
        line = f"{title:34}{node['num_queries']:>8}" + "".join(f"{node[f'recall@{k}']:>8.3f}" for k in ks)
        line += f"{node['mrr']:>8.3f}" + (f"{base['recall@1']:>15.4f}" if base else "")
        lines.append(line)
    intent = trained["intent"]
    lines.append(f"intent accuracy {intent['accuracy']:.3f}, macro F1 {intent['macro_f1']:.3f} ({intent['source']})")
    return "\n".join(lines)


def _get(report: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    for key in path:
        report = report.get(key) if isinstance(report, dict) else None
    return report


def _pool_text(pool: dict[str, Any]) -> str:
    if "num_candidates" in pool:
        return f"{pool['num_candidates']} candidates ({pool['num_text']} texts, {pool['num_image']} images)"
    return f"{pool.get('candidates_per_query')} candidates per query"


def _describe(response: dict[str, Any]) -> str:
    return f"[image {response.get('id')}]" if response["modality"] == "image" else repr(response["text"])


def example_retrievals(trainer: Any, dataset: Any, top: int = 5) -> str:
    """The dialogue and top candidates of the first text-response and first image-response query."""
    scores, pool = trainer.last_eval_scores, trainer.last_eval_pool
    if scores is None or pool is None:
        return ""
    modalities = dataset.select_columns(["response"]).with_format("arrow")[:].column("response").combine_chunks()
    modalities = modalities.field("modality").to_pylist()
    lines = []
    for wanted in ("text", "image"):
        if wanted not in modalities:
            continue
        query = modalities.index(wanted)
        example = dataset[query]
        lines.append(f"\nexample: dialogue {example['dialogue_id']} (true response: {_describe(example['response'])})")
        lines += [f"  {turn['speaker']}: {turn['text'] or '[image]'}" for turn in example["context"]]
        for rank, candidate in enumerate(scores[query].topk(min(top, scores.size(1))).indices.tolist(), 1):
            response = dataset[pool.rows[candidate]]["response"]
            mark = "*" if bool(trainer.last_eval_positives[query, candidate]) else " "
            lines.append(f"  {mark} top-{rank} ({float(scores[query, candidate]):+.3f}) {_describe(response)}")
    return "\n".join(lines + ["  (* = the true response)"]) if lines else ""


# --------------------------------------------------------------------------------------------------------- main
def _build(
    model_args: ModelArguments, data_args: DataArguments, training_args: DialogueRetrievalTrainingArguments
) -> tuple[Any, Any, Any, Any, float]:
    """``(train_set, eval_set, model, processor, clip_seconds)`` for :func:`run`."""
    from ..training.recipes import build_dialclip, build_retriever, dataset_vocabulary, load_retrieval_dataset, resolve_backbones

    data = load_retrieval_dataset(
        data_args.dataset, data_args.data_dir, data_args.image_dir, splits=("train", data_args.eval_split),
        num_train_dialogues=data_args.num_train_dialogues, num_test_dialogues=data_args.num_test_dialogues,
        seed=training_args.seed, image_fraction=data_args.synthetic_image_fraction, on_error=data_args.on_error,
    )
    train_set, eval_set = data["train"], data[data_args.eval_split]
    if data_args.max_eval_examples:
        eval_set = eval_set.select(range(min(data_args.max_eval_examples, len(eval_set))))
    vocabulary = None if data_args.dataset == "synthetic" else dataset_vocabulary(train_set)
    __import__("transformers").set_seed(training_args.seed)
    clip_seconds = 0.0
    if model_args.architecture == "dialclip":
        clip_start = time.perf_counter()  # includes the tiny CLIP's pretraining (0 when cached), outside the budget
        model, processor = build_dialclip(model_args.clip_backbone, training_args.output_dir, vocabulary,
                                          seed=training_args.seed,
                                          tiny_clip_pretrain_steps=model_args.tiny_clip_pretrain_steps,
                                          prompt_overrides=json.loads(model_args.dialclip_prompt_config or "{}"))
        clip_seconds = time.perf_counter() - clip_start
        data_args.pre_encode = False  # pre-encoding packs the flattened-dialogue layout of DR/SDR/MDR batches
    else:
        text, vision = resolve_backbones(model_args.text_backbone, model_args.vision_backbone,
                                         training_args.output_dir, vocabulary, seed=training_args.seed)
        __import__("transformers").set_seed(training_args.seed)
        model, processor = build_retriever(
            model_args.architecture, text, vision, projection_dim=model_args.projection_dim,
            pooling=model_args.pooling or ("mean" if model_args.text_backbone == TINY else "cls"),
            logit_scale_init_value=model_args.logit_scale_init_value,
            symmetric_loss=(model_args.symmetric_loss if model_args.symmetric_loss is not None
                            else model_args.text_backbone == TINY),
        )
    return train_set, eval_set, model, processor, clip_seconds


def run(model_args: ModelArguments, data_args: DataArguments, training_args: DialogueRetrievalTrainingArguments) -> dict[str, Any]:
    """Train and evaluate; write ``eval_results.json`` and the model + processor to ``output_dir``."""
    from tqdm.auto import tqdm

    from ..data import DialogueRetrievalCollator
    from ..parameters import count_parameters
    from ..training.preencoded import PreEncodedCollator, PreEncodedDataset
    from ..training.trainer import DialogueRetrievalTrainer

    resume = resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if model_args.architecture == "dialclip":  # before the corpus is built, which takes a while
        check_clip_backbone(model_args.clip_backbone)
    os.makedirs(training_args.output_dir, exist_ok=True)
    # Under torchrun / accelerate launch the first process writes the shared files (tiny backbones, the tiny CLIP's
    # pretraining cache) before the others read them.
    with training_args.main_process_first(desc="loading the data and building the model"):
        train_set, eval_set, model, processor, clip_seconds = _build(model_args, data_args, training_args)
    collator = DialogueRetrievalCollator(processor)
    # eval_set doubles as the Trainer's eval_dataset, so --eval_strategy steps|epoch evaluates (and logs recall) during
    # training; the final report below is logged too (report_to, trainer_state.json)
    trainer = DialogueRetrievalTrainer(model=model, args=training_args, data_collator=collator,
                                       eval_dataset=eval_set, processing_class=processor)
    untrained = trainer.retrieval_report(eval_set) if data_args.evaluate_untrained else None

    start = time.perf_counter()
    if data_args.pre_encode:
        train_set = PreEncodedDataset(train_set, collator, processor.image_token_id,
                                      progress=lambda chunks: tqdm(chunks, desc="pre-encoding the training set"))
        trainer.data_collator = PreEncodedCollator(processor.tokenizer.pad_token_id)
    trainer.train_dataset = train_set
    pre_encoding = time.perf_counter() - start
    if training_args.max_train_seconds:  # the budget covers pre-encoding too
        trainer.time_budget.max_seconds = max(1.0, training_args.max_train_seconds - pre_encoding)
        training_args.max_train_seconds = trainer.time_budget.max_seconds
    first_step = _checkpoint_step(resume)
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    trainer.evaluate(eval_set)
    trained = trainer.last_eval_report
    trainer.save_model(training_args.output_dir)  # the Trainer writes from the main process only
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)

    steps = trainer.state.global_step
    # this run's own steps: a resumed run counts from its checkpoint (its time is this run's too)
    examples = (steps - first_step) * training_args.per_device_train_batch_size
    examples *= training_args.gradient_accumulation_steps
    examples *= training_args.world_size
    results = {
        "architecture": model_args.architecture, "dataset": data_args.dataset, "eval_split": data_args.eval_split,
        "backbones": ({"clip": model_args.clip_backbone} if model_args.architecture == "dialclip"
                      else {"text": model_args.text_backbone, "vision": model_args.vision_backbone}),
        "parameters": count_parameters(model),
        "training": {
            "seconds": round(seconds, 1), "pre_encoding_seconds": round(pre_encoding, 1),
            "loop_seconds": round(result.metrics.get("train_runtime", seconds - pre_encoding), 1), "steps": steps,
            "resumed_from_step": first_step,
            "examples_seen": examples, "examples_per_second": round(examples / max(seconds - pre_encoding, 1e-9), 1),
            "stopped_by_time_budget": bool(trainer.time_budget and trainer.time_budget.stopped_early),
            "final_loss": result.training_loss,  # mean training loss over this run's steps
            "learning_rate": training_args.learning_rate,
            "batch_size": training_args.per_device_train_batch_size,
        },
        "trained": trained, "untrained": untrained,
    }
    results["seed"] = training_args.seed
    if data_args.dataset == "synthetic":  # what `hf-dialret evaluate` needs to rebuild the same test pool
        results["synthetic_image_fraction"] = data_args.synthetic_image_fraction
        results["num_test_dialogues"] = data_args.num_test_dialogues
    if model_args.architecture == "dialclip" and model_args.clip_backbone == TINY:
        results["clip_pretraining"] = _clip_pretraining_summary(training_args.output_dir, clip_seconds)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
        print("\n" + recall_table(trained, untrained))
        print(f"training: {seconds:.0f} s ({pre_encoding:.0f} s pre-encoding), {steps} steps, {examples} examples, "
              f"{results['training']['examples_per_second']} examples/s")
        if "clip_pretraining" in results:
            print(_clip_pretraining_text(results["clip_pretraining"]))
        print(example_retrievals(trainer, eval_set))
        print(f"\nsaved the model, processor and eval_results.json to {training_args.output_dir}")
    return results


def _clip_pretraining_summary(output_dir: str, seconds_this_run: float) -> dict[str, Any] | None:
    """What ``eval_results.json`` says about the tiny CLIP's contrastive pretraining (outside the time budget):
    ``seconds`` is the pretraining itself, ``seconds_this_run`` the CLIP set-up of this run (about 0 when cached)."""
    from ..prompts import read_pretraining_record

    record = read_pretraining_record(os.path.join(output_dir, "tiny-clip"))
    if record is None:
        return None
    keys = ("seconds", "first_loss", "last_loss", "caption_retrieval_before", "caption_retrieval_after", "arguments",
            "cache_key")
    return {**{key: record[key] for key in keys}, "seconds_this_run": round(seconds_this_run, 1)}


def _clip_pretraining_text(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "tiny CLIP: no pretraining record"
    before, after = summary["caption_retrieval_before"]["overall"], summary["caption_retrieval_after"]["overall"]
    return (f"tiny CLIP pretraining (not in the training time; reused from the cache when already done): "
            f"{summary['arguments']['steps']} steps, {summary['seconds']:.0f} s ({summary['seconds_this_run']:.0f} s "
            f"in this run), loss {summary['first_loss']:.2f} -> "
            f"{summary['last_loss']:.2f}, caption -> picture R@1 {before['recall@1']:.3f} -> {after['recall@1']:.3f}")


def main(argv: list[str]) -> int:
    model_args, data_args, training_args = parse(argv)
    from ..data import DataFormatError
    from ..training.recipes import BackboneNotFoundError, RecipeError

    try:
        run(model_args, data_args, training_args)
    except (FileNotFoundError, NotADirectoryError, BackboneNotFoundError, RecipeError, DataFormatError) as error:
        return fail(str(error))
    return 0
