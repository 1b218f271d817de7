"""``evaluate`` metrics shipped with hf_dialret.

Load them offline by path: ``evaluate.load(hf_dialret.metrics.RECALL_AT_K_PATH)``. ``evaluate`` copies the metric
script into its module cache, so each metric file is self-contained.
"""

from __future__ import annotations

from importlib.resources import files


def metric_path(name: str) -> str:
    """Absolute path of the folder of metric ``name``, as ``evaluate.load`` expects it."""
    path = files(__name__).joinpath(name)
    if not path.joinpath(f"{name}.py").is_file():
        raise ValueError(f"hf_dialret ships no metric named {name!r}")
    return str(path)


#: ``evaluate.load(RECALL_AT_K_PATH)`` → recall@k / Sum / MRR / mean rank (see ``recall_at_k/recall_at_k.py``).
RECALL_AT_K_PATH: str = metric_path("recall_at_k")

__all__ = ["RECALL_AT_K_PATH", "metric_path"]
