"""Benchmark: exact vs approximate top-k search over a large candidate pool, and ResponseIndex's overhead.

    .venv/bin/python bench/search.py                      # 1M x 256 candidates, 1,000 queries, top-10
    .venv/bin/python bench/search.py --n 100000 --runs 3  # a quick look

What is measured (each index in its own worker process, so peak memory is that index's alone):

- ``exact``: FAISS ``IndexFlatIP`` (raw), ``ResponseIndex`` with the default exact factory, and the machine's limit
  for the same scan: one big matrix product (torch ``mm`` over database blocks + ``topk``), runs interleaved;
  queries/s as the median over ``--runs``, and the two ratios ResponseIndex / raw FAISS and raw FAISS / matmul.
- ``ivfpq`` (``IVF1024,PQ64np``: 1,024 lists, 64-byte codes, no polysemous training, trained on 64 vectors per
  list as ResponseIndex does) and ``hnsw`` (``HNSW16``, efConstruction 32), raw FAISS: build time, queries/s at two search settings, recall@10
  against the exact top-10.
- memory: peak RSS of the worker minus its RSS after loading the data (psutil), i.e. what the index adds.

Data: synthetic and L2-normalised, with a low intrinsic dimension like trained embeddings: points of a random
32-dimensional subspace of R^256 plus 10 % isotropic noise. (Isotropic random vectors in 256 dimensions, or points
scattered around cluster centres, have near-tied neighbours: the exact top-10 is then noise, and the recall of any
approximate index against it is meaningless.) Queries are new points of the same distribution. Seeded, so every run
sees the same arrays.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 10
INTRINSIC_DIM = 32


def make_data(n: int, dim: int, n_queries: int, directory: Path, seed: int = 0) -> None:
    # Low intrinsic dimension (a random 32-dim subspace, plus 10 % isotropic noise), like trained embeddings.
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((INTRINSIC_DIM, dim), dtype=np.float32)

    def sample(rows: int) -> np.ndarray:
        block = rng.standard_normal((rows, INTRINSIC_DIM), dtype=np.float32) @ basis
        block += 0.1 * np.linalg.norm(block, axis=1, keepdims=True) / np.sqrt(dim) * rng.standard_normal(
            (rows, dim), dtype=np.float32)
        return block / np.linalg.norm(block, axis=1, keepdims=True)

    database = np.lib.format.open_memmap(directory / "database.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, 131072):  # in chunks: never two full copies in memory
        database[start : start + min(131072, n - start)] = sample(min(131072, n - start))
    database.flush()
    del database
    np.save(directory / "queries.npy", sample(n_queries))


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def timed(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def hits_to_ids(hits) -> np.ndarray:
    return np.array([[h.id for h in row] for row in hits], dtype=np.int64)


def worker_exact(directory: Path, runs: int) -> dict:
    import faiss
    import torch

    from hf_dialret.retrieval import ResponseIndex

    database, queries = np.load(directory / "database.npy"), np.load(directory / "queries.npy")
    base = rss()
    start = time.perf_counter()
    flat = faiss.IndexFlatIP(database.shape[1])
    flat.add(database)
    flat_build, flat_mem = time.perf_counter() - start, rss() - base
    _, truth = flat.search(queries, K)
    np.save(directory / "truth.npy", truth)
    before = rss()
    start = time.perf_counter()
    index = ResponseIndex.from_embeddings(database, factory="Flat")
    index_build, index_mem = time.perf_counter() - start, rss() - before
    db_t, q_t = torch.from_numpy(database), torch.from_numpy(queries)

    def matmul_topk() -> np.ndarray:
        # The same exhaustive scan as one big GEMM, in database blocks so the score matrix stays ~0.5 GB.
        best_s = torch.full((len(q_t), K), -float("inf"))
        best_i = torch.zeros((len(q_t), K), dtype=torch.long)
        for lo in range(0, len(db_t), 131072):
            scores = q_t @ db_t[lo : lo + 131072].T
            s, i = scores.topk(K, dim=1)
            merged_s, order = torch.cat([best_s, s], 1).topk(K, dim=1)
            best_i = torch.cat([best_i, i + lo], 1).gather(1, order)
            best_s = merged_s
        return best_i.numpy()

    methods = {
        "faiss_flat": lambda: flat.search(queries, K)[1],
        "response_index": lambda: hits_to_ids(index.search_embeddings(queries, K)),
        "matmul_topk": matmul_topk,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(runs):  # interleaved, so load changes on the machine hit every method alike
        for name, fn in methods.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    qps = {name: len(queries) / statistics.median(t) for name, t in times.items()}
    return {
        "faiss_flat": {"build_s": flat_build, "index_mem_mb": flat_mem / 2**20, "qps": qps["faiss_flat"],
                       "times_s": times["faiss_flat"], "recall@10": 1.0},
        "response_index": {"build_s": index_build, "index_mem_mb": index_mem / 2**20, "qps": qps["response_index"],
                           "times_s": times["response_index"],
                           "recall@10": recall(outputs["response_index"], truth)},
        "matmul_topk": {"qps": qps["matmul_topk"], "times_s": times["matmul_topk"],
                        "recall@10": recall(outputs["matmul_topk"], truth),
                        "gflops": 2 * database.size * len(queries) / statistics.median(times["matmul_topk"]) / 1e9},
        "ratio_response_index_vs_faiss": qps["response_index"] / qps["faiss_flat"],
        # Paired per round (same moment, same machine load): robust when other jobs come and go during the run.
        "ratio_response_index_vs_faiss_paired_median": statistics.median(
            f / r for f, r in zip(times["faiss_flat"], times["response_index"])),
        "ratio_faiss_vs_matmul_paired_median": statistics.median(
            m / f for m, f in zip(times["matmul_topk"], times["faiss_flat"])),
        "ratio_faiss_vs_matmul": qps["faiss_flat"] / qps["matmul_topk"],
        "peak_mem_over_data_mb": (peak_rss() - base) / 2**20,
    }


def worker_approximate(directory: Path, runs: int, factory: str, settings: list[str]) -> dict:
    # Raw FAISS here (ResponseIndex's overhead is measured in the exact worker): HNSW's efConstruction is a build
    # parameter that factory strings cannot set, and it decides whether a 1M build fits in minutes on 2 cores.
    import faiss

    database, queries = np.load(directory / "database.npy"), np.load(directory / "queries.npy")
    truth = np.load(directory / "truth.npy")
    base = rss()
    start = time.perf_counter()
    index = faiss.index_factory(database.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("HNSW"):
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if not index.is_trained:  # the sample policy of ResponseIndex: 64 vectors per IVF list
        nlist = faiss.extract_index_ivf(index).nlist
        sample = np.random.default_rng(0).choice(len(database), min(len(database), 64 * nlist), replace=False)
        index.train(database[np.sort(sample)])
    train = time.perf_counter() - start
    index.add(database)
    build, mem = time.perf_counter() - start, rss() - base
    del database  # what remains is the index (codes or vectors + graph), not the input array
    rows = {}
    space = faiss.ParameterSpace()
    for setting in settings:
        space.set_index_parameters(index, setting)
        seconds, (_, found) = timed(lambda: index.search(queries, K), runs)
        rows[setting] = {"qps": len(queries) / seconds, "recall@10": recall(found, truth)}
    return {"factory": factory, "train_s": train, "build_s": build, "index_mem_mb": mem / 2**20,
            "peak_mem_over_data_mb": (peak_rss() - base) / 2**20, "search": rows}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


def run_worker(args: argparse.Namespace, name: str, directory: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(directory), "--runs", str(args.runs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


HNSW_EF_CONSTRUCTION = 32
WORKERS = {
    "ivfpq": ("IVF1024,PQ64np", ["nprobe=8", "nprobe=32"]),
    "hnsw": ("HNSW16", ["efSearch=32", "efSearch=128"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--exact-only", action="store_true", help="skip the approximate indexes")
    parser.add_argument("--worker", choices=["exact", *WORKERS], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "exact":
        print(json.dumps(worker_exact(args.data, args.runs)))
        return
    if args.worker:
        factory, settings = WORKERS[args.worker]
        print(json.dumps(worker_approximate(args.data, args.runs, factory, settings)))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        make_data(args.n, args.dim, args.queries, Path(tmp))
        results = {"exact": run_worker(args, "exact", Path(tmp))}  # first: writes the exact top-10 (truth.npy)
        for name in [] if args.exact_only else WORKERS:
            results[name] = run_worker(args, name, Path(tmp))
    import faiss
    import torch

    results["setup"] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "n": args.n, "dim": args.dim,
        "queries": args.queries, "k": K, "runs": args.runs, "date": dt.date.today().isoformat(),
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "faiss": faiss.__version__, "torch": torch.__version__, "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
