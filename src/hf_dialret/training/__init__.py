"""Training and evaluation: the Trainer subclass, its arguments, cross-process gathering and the protocols.

``DialogueRetrievalTrainer`` + ``DialogueRetrievalTrainingArguments`` train any hf_dialret retriever with the stock
Trainer features (checkpoints and exact resume, mixed precision, gradient accumulation, ``torchrun`` /
``accelerate launch``), with in-batch negatives gathered from every process, and evaluate every protocol of
:mod:`hf_dialret.training.evaluation`.
"""

from .callbacks import TimeBudgetCallback
from .evaluation import flatten_report, intent_metrics, retrieval_report, shared_pool_scores, stack_per_query_pools
from .gather import all_gather_with_grad, get_rank, get_world_size
from .pools import SharedPool, build_shared_pool, example_pool, has_candidate_pools
from .preencoded import PreEncodedCollator, PreEncodedDataset
from .trainer import DialogueRetrievalTrainer
from .training_args import DialogueRetrievalTrainingArguments

__all__ = [
    "DialogueRetrievalTrainer",
    "DialogueRetrievalTrainingArguments",
    "PreEncodedCollator",
    "PreEncodedDataset",
    "SharedPool",
    "TimeBudgetCallback",
    "all_gather_with_grad",
    "build_shared_pool",
    "example_pool",
    "flatten_report",
    "get_rank",
    "get_world_size",
    "has_candidate_pools",
    "intent_metrics",
    "retrieval_report",
    "shared_pool_scores",
    "stack_per_query_pools",
]
