"""Helpers shared by the benches: device choice, machine description, matmul FLOP/s, medians, peak memory.

Every bench runs unchanged on a CUDA GPU (picked automatically) or on the CPU. Absolute throughputs on a shared
machine move with the load, so the benches interleave the variants they compare and report ratios measured in the
same run; :func:`load_average` is printed next to every table so that a reader can judge the absolute figures.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))

from hf_dialret.inference import autocast, cpu_bf16_flags, resolve_precision  # noqa: E402


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else the first CUDA GPU when there is one, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def precision_context(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast for ``"bf16"``, nothing for ``"fp32"`` (the benches time both explicitly)."""
    return autocast(device, resolve_precision(precision, device))


def synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without this a timer measures the launch, not the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1/5/15-minute load averages (what `uptime` prints): how busy the shared cores were."""
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    except OSError:
        return "n/a"


def machine_description(device: torch.device) -> dict[str, str]:
    """What the figures depend on: CPU, cores and threads, bf16 flags, GPU, library versions."""
    import transformers

    info = {
        "cpu": cpu_model_name(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "cpu bf16 flags": ", ".join(sorted(cpu_bf16_flags())) or "none",
        "memory": f"{_total_memory_gib():.0f} GiB",
        "device": str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["gpu"] = "none available (GPU figures not measured in this run)"
    return info


def _total_memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def print_machine(device: torch.device) -> None:
    for key, value in machine_description(device).items():
        print(f"# {key}: {value}")
    print(f"# load average at start: {load_average()}")


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (synchronised on CUDA)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def timed_both(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of ``fn`` (synchronised on CUDA).

    On a CPU shared with other jobs the wall time includes the time this process waited for a core; the CPU time
    (every thread of the process, ``time.process_time``) does not, so figures built on it move far less with the
    load. With several threads it also counts OpenMP's spin-waits at barriers, an overhead that is the step's own.
    """
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_flops(
    device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5, min_seconds: float = 0.5,
    cpu_time: bool = False,
) -> float:
    """The machine's achievable dense matmul rate in FLOP/s for ``dtype`` (median of ``repeats`` timings).

    A square ``size``×``size`` GEMM is the best case for the BLAS (oneDNN/MKL on CPU, cuBLAS on GPU), so it is the
    ceiling that a training step's FLOP/s is compared with. bf16 on CPU runs on AMX/AVX512-BF16 where present.
    ``cpu_time``: FLOP per second of process CPU time (see :func:`timed_both`), the ceiling for CPU-time figures.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops_per_call = 2.0 * size**3
    pick = 1 if cpu_time else 0
    with torch.inference_mode():
        torch.mm(a, b)  # warm-up: thread pool, kernel selection
        calls = max(1, int(min_seconds / max(timed(lambda: torch.mm(a, b), device), 1e-6)))
        rates = []
        for _ in range(repeats):
            seconds = timed_both(lambda: [torch.mm(a, b) for _ in range(calls)], device)[pick]
            rates.append(flops_per_call * calls / seconds)
    return median(rates)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # psutil is in the dev extra; fall back to /proc
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Peak memory of a block: CUDA ``max_memory_allocated`` on a GPU, sampled RSS growth on the CPU.

    ``ru_maxrss`` only ever grows over the life of a process, so on the CPU a background thread samples the RSS
    every few milliseconds and reports the peak over the block's starting RSS (``peak_mib``) and the absolute
    peak (``peak_rss_mib``). Run variants in separate processes when their absolute peaks are compared.
    """

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device = device
        self.interval = interval
        self.peak_mib = 0.0
        self.peak_rss_mib = 0.0
        self._stop = False

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        import threading

        self._start = current_rss_mib()
        self._max = self._start
        self._stop = False

        def sample() -> None:
            while not self._stop:
                self._max = max(self._max, current_rss_mib())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop = True
            self._thread.join()
            peak = max(self._max, current_rss_mib())
        self.peak_mib = peak - self._start
        self.peak_rss_mib = peak


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
