"""``DialogueRetrievalTrainer``: the HF ``Trainer`` for dialogue response retrievers.

Two things differ from the stock Trainer:

- **Loss with negatives from every process.** ``compute_loss`` runs the model with ``return_loss=False`` and calls
  ``model.compute_loss`` itself, with the response embeddings, modalities and content ids of *all* processes as
  candidates (gathered with gradient, :mod:`.gather`) and ``positive_index = arange(B) + offset``. Candidates with the
  same content id as an example's response are masked out of its negatives by the loss. With DDP averaging the
  gradients, a run on W processes × B examples computes the same loss and gradients as one process on W·B examples.
- **Retrieval evaluation.** ``evaluate`` embeds the queries once and the candidate pool once, then computes every
  protocol of :mod:`.evaluation` (oracle text/image retrieval, intent, multimodal), overall and per response
  modality. Encoding goes through the (possibly DDP-wrapped) model's ``forward``, sharded over processes and gathered
  with ``gather_for_metrics``, so every rank returns the same numbers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from ..inference import cpu_bf16_flags
from .attention import bf16_on_cpu, eager_attention
from .cached_loss import cached_training_step
from .callbacks import TimeBudgetCallback
from .evaluation import flatten_report, retrieval_report, shared_pool_scores, stack_per_query_pools
from .gather import all_gather_with_grad, gather_sizes, global_offset, is_distributed
from .schedule import SUPPORTED, time_aware_scheduler, wsd_decay_ratio
from .pools import SharedPool, build_shared_pool, candidate_pool_width, example_pool, has_candidate_pools, response_keys

# DialCLIP reads its earlier turns from the context_* keys (its input_ids hold only the current turn); the other
# models' batches lack them, and _forward passes only the keys a batch has.
_CONTEXT_KEYS = ("input_ids", "attention_mask", "context_pixel_values", "context_input_ids", "context_attention_mask",
                 "context_text_batch_index", "context_image_batch_index")
_RESPONSE_KEYS = ("response_input_ids", "response_attention_mask", "response_pixel_values", "response_modality")


class DialogueRetrievalTrainer(Trainer):
    """Trainer for DR, SDR, MDR and DialCLIP (see the module docstring).

    Pass the :class:`~hf_dialret.modeling.DialogueRetrievalProcessor` as ``processing_class`` (it encodes candidate
    pools during evaluation) and a :class:`~hf_dialret.data.DialogueRetrievalCollator` as ``data_collator``.
    ``eval_data_collator`` collates the raw evaluation examples when ``data_collator`` expects something else (e.g. a
    :class:`~hf_dialret.training.PreEncodedCollator` for a pre-encoded training set); it defaults to ``data_collator``.
    After ``evaluate``, the nested report of the last evaluation is in ``last_eval_report``.
    """

    def __init__(self, *args: Any, eval_data_collator: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator if eval_data_collator is not None else self.data_collator
        # The loss is a mean over this process's queries, not a sum over `num_items_in_batch`: let the Trainer
        # divide by the gradient-accumulation steps whatever the model's forward signature suggests.
        self.model_accepts_loss_kwargs = False
        self.last_eval_report: dict[str, Any] | None = None
        #: scores `(Q, N)`, positive mask and shared pool of the last evaluation (pool None for per-query pools)
        self.last_eval_scores: torch.Tensor | None = None
        self.last_eval_positives: torch.Tensor | None = None
        self.last_eval_pool: SharedPool | None = None
        self.time_budget: TimeBudgetCallback | None = None
        budget = getattr(self.args, "max_train_seconds", None)
        if budget:
            self.time_budget = TimeBudgetCallback(budget)
            self.add_callback(self.time_budget)

    # ------------------------------------------------------------------------------------------------ training
    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; in bf16 on the CPU the encoders use eager attention meanwhile (see :mod:`.attention`)."""
        if bf16_on_cpu(self.args) and not cpu_bf16_flags():
            warnings.warn(
                "bf16 training on a CPU without native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo): PyTorch "
                "emulates it, which measured ~15x slower than fp32 on such a CPU; drop --bf16 here",
                stacklevel=2,
            )
        with eager_attention(self.model, enabled=bf16_on_cpu(self.args)):
            return super().train(*args, **kwargs)

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """With ``max_train_seconds``, a schedule driven by whichever of steps and time runs out first.

        ``warmup_stable_decay`` with a ``decay_ratio`` in ``lr_scheduler_kwargs`` uses that schedule even without a
        time budget (transformers' own WSD counts its decay in steps, ``num_decay_steps``, and rejects ``decay_ratio``;
        a share of the run does not depend on how many steps it turns out to have).
        """
        budget = getattr(self.args, "max_train_seconds", None)
        kind = str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type))
        scheduler_kwargs = self.args.lr_scheduler_kwargs or {}
        ratio_given = kind == "warmup_stable_decay" and "decay_ratio" in scheduler_kwargs
        if self.lr_scheduler is None and kind in SUPPORTED and (budget or ratio_given):
            # Only WSD reads lr_scheduler_kwargs; the other time-aware kinds have no options.
            options = {}
            if kind == "warmup_stable_decay":
                options["decay_ratio"] = wsd_decay_ratio(scheduler_kwargs, num_training_steps)
            self.lr_scheduler = time_aware_scheduler(
                optimizer if optimizer is not None else self.optimizer,
                kind,
                num_training_steps,
                self.args.get_warmup_steps(num_training_steps),
                budget or math.inf,
                **options,
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def _retriever(self, model: torch.nn.Module) -> torch.nn.Module:
        """The retriever under DDP/accelerate wrappers (a PeftModel forwards attribute access to its base)."""
        return self.accelerator.unwrap_model(model)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        outputs = model(**inputs, return_loss=False)
        loss = self._contrastive_loss(model, outputs.context_embeds, outputs.response_embeds, outputs.intent_logits,
                                      inputs)
        outputs.loss = loss
        return (loss, outputs) if return_outputs else loss

    def _contrastive_loss(
        self,
        model: torch.nn.Module,
        context_embeds: torch.Tensor,
        responses: torch.Tensor,
        intent_logits: torch.Tensor | None,
        inputs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The model's loss on given embeddings, with the candidates of every process (shared by the plain and the
        cached step)."""
        modality = inputs["response_modality"]
        ids = inputs.get("response_ids")
        candidates, candidate_modality, candidate_ids = responses, modality, ids
        positive_index = torch.arange(responses.size(0), device=responses.device)
        retriever = self._retriever(model)
        # The symmetric loss's response -> context direction needs the context of every candidate.
        extra = {"candidate_contexts": context_embeds} if getattr(retriever.config, "symmetric_loss", False) else {}
        if getattr(self.args, "gather_negatives_across_processes", True) and is_distributed():
            sizes = gather_sizes(responses.size(0), responses.device)
            candidates = all_gather_with_grad(responses, sizes)
            candidate_modality = all_gather_with_grad(modality, sizes)
            candidate_ids = all_gather_with_grad(ids, sizes) if ids is not None else None
            positive_index = positive_index + global_offset(sizes)
            if extra:
                extra["candidate_contexts"] = all_gather_with_grad(context_embeds, sizes)
        loss = retriever.compute_loss(
            **extra,
            context_embeds=context_embeds,
            response_embeds=responses,
            response_modality=modality,
            response_ids=ids,
            intent_logits=intent_logits,
            candidate_embeds=candidates,
            candidate_modality=candidate_modality,
            candidate_ids=candidate_ids,
            positive_index=positive_index,
        )
        if is_distributed():
            # DDP (find_unused_parameters=False) needs a gradient for every parameter on every rank; a rank whose
            # batch has no image (or no text) response would leave a tower without one and stall the reduction.
            # A zero-valued term gives them a zero local gradient, which DDP then averages with the other ranks'.
            trainable = [param for param in model.parameters() if param.requires_grad]
            loss = loss + sum(param.reshape(-1)[:1].sum() for param in trainable) * 0.0
        return loss

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """With ``gradient_cache_chunk_size``, the memory-bounded cached step (:mod:`.cached_loss`)."""
        chunk = getattr(self.args, "gradient_cache_chunk_size", None)
        if not chunk:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps
        loss = cached_training_step(
            model,
            inputs,
            chunk,
            loss_fn=self._contrastive_loss,
            loss_scale=scale,
            forward_context=self.compute_loss_context_manager,
            backward=self.accelerator.backward,
            no_sync=(lambda: self.accelerator.no_sync(model)) if is_distributed() else None,
        )
        return loss.detach() * scale

    # ---------------------------------------------------------------------------------------------- evaluation
    def evaluate(
        self,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Every retrieval protocol on ``eval_dataset`` (default: the trainer's), logged and returned flat."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("DialogueRetrievalTrainer.evaluate needs an eval_dataset")
        if isinstance(dataset, dict):
            metrics: dict[str, float] = {}
            for name, part in dataset.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        start = time.perf_counter()
        report = self.retrieval_report(dataset)
        self.last_eval_report = report
        metrics = flatten_report(report, metric_key_prefix)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    @torch.no_grad()
    def retrieval_report(self, dataset: datasets.Dataset) -> dict[str, Any]:
        """Nested report of every protocol (see :func:`hf_dialret.training.evaluation.retrieval_report`)."""
        model = self.model_wrapped if self.model_wrapped is not None else self.model
        was_training = model.training
        model.eval()
        try:
            retriever = self._retriever(model)
            context_embeds, intent_logits = self._encode_queries(model, dataset)
            modalities, _ = response_keys(dataset)
            response_modality = torch.tensor(modalities, dtype=torch.long)
            shared = None
            if has_candidate_pools(dataset):
                scores, positives, candidate_modality = self._per_query_scores(model, dataset, context_embeds)
                pool = {"kind": "per query", "candidates_per_query": int(candidate_pool_width(dataset))}
            else:
                shared = build_shared_pool(dataset)
                candidate_embeds = self._encode_responses(model, dataset.select(shared.rows))
                scores, positives, candidate_modality = shared_pool_scores(
                    context_embeds, response_modality, shared.query_candidate,
                    candidate_embeds, shared.modality, torch.arange(len(shared)),
                )
                pool = {
                    "kind": "shared (deduplicated responses of the evaluation set)",
                    "num_candidates": len(shared),
                    "num_text": int((shared.modality == 0).sum()),
                    "num_image": int((shared.modality == 1).sum()),
                }
            report = retrieval_report(
                scores, positives, candidate_modality, response_modality,
                intent_logits=intent_logits,
                joint_response_pool=bool(getattr(retriever, "joint_response_pool", True)),
                ks=tuple(getattr(self.args, "recall_ks", (1, 5, 10))),
            )
        finally:
            model.train(was_training)
        self.last_eval_scores, self.last_eval_positives, self.last_eval_pool = scores, positives, shared
        report["pool"] = {**pool, "num_queries": len(dataset)}
        return report

    def _sharded(self, loader: DataLoader) -> DataLoader:
        # accelerate shards batches over processes; gather_for_metrics later drops its padding duplicates.
        return self.accelerator.prepare_data_loader(loader) if is_distributed() else loader

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        # Single process: no gather at all, because gather_for_metrics would truncate by the remainder of whichever
        # prepared dataloader (e.g. the training one) last set accelerate's gradient state.
        return self.accelerator.gather_for_metrics(tensor) if is_distributed() else tensor

    def _forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], keys: tuple[str, ...]) -> Any:
        inputs = {key: batch[key] for key in keys if key in batch and batch[key] is not None}
        with self.autocast_smart_context_manager():
            return model(**self._prepare_inputs(inputs), return_loss=False)

    def _encode_queries(self, model: torch.nn.Module, dataset: datasets.Dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Context embeddings `(Q, 2, D)` and intent logits `(Q, 2)` (None without an intent head), dataset order."""
        loader = self._sharded(self._loader(dataset, self.eval_data_collator))
        contexts, intents = [], []
        for batch in self._progress(loader, "encoding dialogues"):
            out = self._forward(model, batch, _CONTEXT_KEYS)
            contexts.append(self._gather(out.context_embeds.float().contiguous()).cpu())
            if out.intent_logits is not None:
                intents.append(self._gather(out.intent_logits.float().contiguous()).cpu())
        return torch.cat(contexts), (torch.cat(intents) if intents else None)

    def _encode_responses(self, model: torch.nn.Module, dataset: datasets.Dataset) -> torch.Tensor:
        """Embeddings `(N, D)` of the responses of ``dataset``'s rows, in row order."""
        processor = self._processor()
        loader = self._sharded(self._loader(dataset, lambda rows: processor(responses=[row["response"] for row in rows])))
        embeds = []
        for batch in self._progress(loader, "encoding candidates"):
            out = self._forward(model, batch, _RESPONSE_KEYS)
            embeds.append(self._gather(out.response_embeds.float().contiguous()).cpu())
        return torch.cat(embeds)

    def _per_query_scores(
        self, model: torch.nn.Module, dataset: datasets.Dataset, context_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MMDialog protocol: each example against its own pool, every pool encoded once (in chunks)."""
        from ..modeling.retrieval_loss import modality_aware_scores

        processor = self._processor()
        width = candidate_pool_width(dataset)
        chunk = self.args.per_device_eval_batch_size
        loader = self._sharded(DataLoader(range(len(dataset)), batch_size=1, collate_fn=lambda index: torch.tensor(index)))
        rows = []
        for index in self._progress(loader, "scoring per-query pools"):
            query = int(index[0])
            pool, modality, positives = example_pool(dataset[query])
            embeds = []
            for start in range(0, len(pool), chunk):
                batch = processor(responses=pool[start : start + chunk])
                embeds.append(self._forward(model, batch, _RESPONSE_KEYS).response_embeds.float().cpu())
            scores = modality_aware_scores(context_embeds[query : query + 1], torch.cat(embeds), modality)[0]
            row_scores, row_positives, row_modality = stack_per_query_pools([(scores, positives, modality)], width)
            # One float tensor per row so that a single gather keeps scores, positives and modalities aligned.
            packed = torch.cat([row_scores, row_positives.float(), row_modality.float()], dim=1)
            rows.append(self._gather(packed.to(self.args.device)).cpu())
        packed = torch.cat(rows)
        return packed[:, :width], packed[:, width : 2 * width].bool(), packed[:, 2 * width :].long()

    def _processor(self) -> Any:
        if self.processing_class is None or not callable(self.processing_class):
            raise ValueError("evaluation encodes candidate pools with the processor: pass processing_class=<DialogueRetrievalProcessor>")
        return self.processing_class

    def _loader(self, dataset: datasets.Dataset, collate_fn: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=collate_fn,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
        )

    def _progress(self, loader: DataLoader, description: str) -> Iterator[Any]:
        """Iterate with a progress bar on the main process (unless the user disabled tqdm)."""
        if self.args.disable_tqdm or not self.is_world_process_zero():
            yield from loader
            return
        from tqdm.auto import tqdm

        yield from tqdm(loader, desc=description, leave=False)
