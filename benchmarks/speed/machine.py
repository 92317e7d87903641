"""The machine a speed benchmark ran on, as a markdown block.

Speed numbers mean nothing without the hardware, the library versions and the thread counts
behind them, and on a shared machine without the load at the time; every script prints this
block so that a table is never read without it. Only the standard library is required: torch,
faiss and numpy are reported when importable.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# These change which BLAS kernels numpy/faiss pick, so they are part of what was measured.
REPORTED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    """The SIMD level decides FAISS's and torch's kernels; 'AMD EPYC' alone does not say it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if f in flags)
    except OSError:
        pass
    return "unknown"


def _meminfo_gib(key: str) -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return None


def available_memory_bytes() -> int | None:
    """MemAvailable, so a benchmark can refuse a size that would push the machine into OOM."""
    gib = _meminfo_gib("MemAvailable")
    return None if gib is None else int(gib * 1024 ** 3)


def facts() -> dict[str, str]:
    """Name -> value for everything that bears on the speed numbers."""
    out: dict[str, str] = {}
    out["CPU"] = _cpu_model()
    out["SIMD"] = _cpu_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out["cores"] = f"{os.cpu_count()} logical, {usable} usable by this process"
    total, avail = _meminfo_gib("MemTotal"), _meminfo_gib("MemAvailable")
    if total is not None:
        out["RAM"] = f"{total:.1f} GiB total, {avail:.1f} GiB available at start"
    if hasattr(os, "getloadavg"):
        one, five, _ = os.getloadavg()
        out["load average"] = f"{one:.2f} (1 min), {five:.2f} (5 min) at start: other jobs share these cores"
    out["OS"] = f"{platform.system()} {platform.release()}"
    out["Python"] = sys.version.split()[0]
    try:
        import numpy

        out["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import torch

        out["torch"] = f"{torch.__version__} ({torch.get_num_threads()} intra-op threads, " \
                       f"{torch.get_num_interop_threads()} inter-op)"
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            out["GPU (torch)"] = ", ".join(names)
        else:
            out["GPU (torch)"] = "none"
    except ImportError:
        out["torch"] = "not installed"
    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        out["faiss"] = f"{faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads, {gpus} GPUs)"
    except ImportError:
        out["faiss"] = "not installed"
    env = [f"{k}={os.environ[k]}" for k in REPORTED_ENV if k in os.environ]
    out["thread/BLAS env"] = " ".join(env) if env else "none set"
    return out


def machine_block(title: str = "Machine") -> str:
    """Markdown: a heading and a two-column table."""
    lines = [f"### {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts().items()]
    return "\n".join(lines) + "\n"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A pipe table that reads in a terminal as well as in a rendered .md file."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_data() -> Path:
    """The shared Myntra catalog sits beside the repo, never inside it."""
    return (repo_root() / ".." / "shared" / "data" / "myntra").resolve()


if __name__ == "__main__":
    print(machine_block())
