"""Where encoders and FAISS run: the one place that decides between CPU and CUDA.

The decision is a pure function of what is asked and what the machine has, so its logic is
tested on CPU-only machines; the probes and the GPU transfer are the only GPU-touching code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from moonsearch.errors import MoonsearchError

DEVICES = ("auto", "cpu", "cuda")
GPU_INDEX_TYPES = {"flat", "ivf"}  # faiss has no GPU HNSW; those indexes stay on the CPU


@dataclass(frozen=True)
class Placement:
    encoder: str        # "cpu" | "cuda"
    faiss_gpu: bool
    reason: str


def choose_placement(requested: str, torch_cuda: bool, faiss_gpus: int, index_type: str) -> Placement:
    """auto -> CUDA when a GPU is visible to torch; FAISS on GPU when faiss-gpu sees one too."""
    if requested not in DEVICES:
        raise MoonsearchError(f"unknown device '{requested}' (choose from {', '.join(DEVICES)})")
    if requested == "cpu":
        return Placement("cpu", False, "asked for cpu")
    if requested == "cuda" and not torch_cuda:
        raise MoonsearchError("--device cuda was asked for, but torch sees no CUDA GPU here")
    if not torch_cuda:
        return Placement("cpu", False, "no CUDA GPU found")
    if faiss_gpus <= 0:
        return Placement("cuda", False, "encoder on GPU; faiss has no GPU support (install moonsearch[gpu])")
    if index_type not in GPU_INDEX_TYPES:
        return Placement("cuda", False, f"encoder on GPU; faiss {index_type} runs on CPU only")
    return Placement("cuda", True, f"encoder and faiss on GPU ({faiss_gpus} visible)")


def probe_torch_cuda() -> bool:
    """Whether torch sees a CUDA GPU. On Linux without a GPU driver it cannot, and the answer
    comes without importing torch (seconds of a cold query that otherwise needs no torch)."""
    if "torch" not in sys.modules and sys.platform.startswith("linux") and not _gpu_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _gpu_driver_present() -> bool:
    """An NVIDIA (or ROCm) kernel driver is loaded: the precondition of torch.cuda on Linux."""
    return (Path("/proc/driver/nvidia/version").exists() or Path("/dev/kfd").exists()
            or any(Path("/dev").glob("nvidia[0-9]*")))


def probe_faiss_gpus() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def placement_for(requested: str, index_type: str) -> Placement:
    if requested == "cpu":   # nothing to probe
        return choose_placement(requested, False, 0, index_type)
    return choose_placement(requested, probe_torch_cuda(), probe_faiss_gpus(), index_type)


def to_gpu(index):  # pragma: no cover - needs faiss-gpu and a GPU
    import faiss

    return faiss.index_cpu_to_all_gpus(index)


def to_cpu(index):  # pragma: no cover - needs faiss-gpu and a GPU
    import faiss

    return faiss.index_gpu_to_cpu(index)
