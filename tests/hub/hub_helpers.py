"""Data shared by the hub tests (a plain module: tests/ is not a package, and `conftest` names collide)."""

EVAL_REPORT = {
    # The nested report of hf_dialret.training.evaluation.retrieval_report (numbers made up).
    "text_retrieval": {"recall@1": 0.2, "recall@5": 0.5, "recall@10": 0.7, "sum": 1.4, "mrr": 0.33,
                       "mean_rank": 9.0, "num_queries": 100},
    "image_retrieval": {"recall@1": 0.1, "recall@5": 0.3, "recall@10": 0.45, "mrr": 0.2, "num_queries": 50},
    "multimodal": {"overall": {"recall@1": 0.12, "recall@5": 0.4, "recall@10": 0.6, "mrr": 0.25,
                               "num_queries": 150},
                   "image": {"recall@1": 0.08, "recall@5": 0.3, "recall@10": 0.4, "num_queries": 50},
                   "protocol": "joint pool"},
    "intent": {"accuracy": 0.81, "macro_f1": 0.74, "source": "modality of the top-ranked candidate"},
}
