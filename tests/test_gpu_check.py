"""benchmarks/gpu_check.py runs on a CPU-only machine: the CPU halves pass and every GPU part
says, on one SKIP line, why it did not run (the script is known to work before a GPU is lent)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


def test_gpu_check_runs_on_cpu_and_reports_its_skips(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script runs its GPU parts instead of skipping them")
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--vectors", "2000", "--skip-mllm-tests",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    status = {r["step"]: r["status"] for r in results}
    assert status["faiss CPU flat"] == "PASS" and status["moon-lite on CPU"] == "PASS"
    skipped = [r for r in results if r["status"] == "SKIP"]
    assert {"faiss GPU", "moon-lite on CUDA vs CPU", "tiny Qwen2-VL encoder on CUDA vs CPU"} <= {r["step"] for r in skipped}
    assert all(r["detail"] for r in skipped)
    for line in ("SKIP  faiss GPU: ", "SKIP  moon-lite on CUDA vs CPU: "):
        assert line in done.stdout
    assert "0 failed" in done.stdout
