import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.devices import choose_placement, placement_for


def test_cpu_requested_stays_on_cpu_even_with_gpu():
    p = choose_placement("cpu", torch_cuda=True, faiss_gpus=2, index_type="flat")
    assert (p.encoder, p.faiss_gpu) == ("cpu", False)


def test_auto_without_gpu_is_cpu():
    p = choose_placement("auto", torch_cuda=False, faiss_gpus=0, index_type="flat")
    assert (p.encoder, p.faiss_gpu) == ("cpu", False)


@pytest.mark.parametrize("requested", ["auto", "cuda"])
def test_gpu_machine_uses_gpu_for_encoder_and_faiss(requested):
    p = choose_placement(requested, torch_cuda=True, faiss_gpus=1, index_type="ivf")
    assert (p.encoder, p.faiss_gpu) == ("cuda", True)


def test_gpu_without_faiss_gpu_keeps_faiss_on_cpu():
    p = choose_placement("auto", torch_cuda=True, faiss_gpus=0, index_type="flat")
    assert (p.encoder, p.faiss_gpu) == ("cuda", False)
    assert "faiss" in p.reason


def test_hnsw_stays_on_cpu():
    p = choose_placement("auto", torch_cuda=True, faiss_gpus=4, index_type="hnsw")
    assert (p.encoder, p.faiss_gpu) == ("cuda", False)


def test_cuda_requested_without_gpu_is_an_error():
    with pytest.raises(MoonsearchError, match="no CUDA"):
        choose_placement("cuda", torch_cuda=False, faiss_gpus=0, index_type="flat")


def test_unknown_device():
    with pytest.raises(MoonsearchError):
        choose_placement("tpu", torch_cuda=False, faiss_gpus=0, index_type="flat")


def test_probe_on_this_machine_matches_its_hardware():
    import torch

    p = placement_for("auto", "flat")
    assert p.encoder == ("cuda" if torch.cuda.is_available() else "cpu")
