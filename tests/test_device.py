import pytest
import torch

from genai.core.device import (
    autocast,
    available_devices,
    check_precision,
    grad_scaler,
    resolve_device,
)


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert "cpu" in available_devices()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_names_what_exists():
    with pytest.raises(
        ValueError, match=r"device 'cuda:1' is not available; this machine has: cpu"
    ):
        resolve_device("cuda:1")


def test_unknown_device():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_precision():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("fp8", cpu)
    with pytest.raises(ValueError, match="'fp16' needs a GPU"):
        check_precision("fp16", cpu)
    with autocast(cpu, "bf16"):
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    assert not grad_scaler(cpu, "bf16").is_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_scaler():
    cuda = resolve_device("cuda")
    assert grad_scaler(cuda, "fp16").is_enabled()
    with autocast(cuda, "fp16"):
        assert torch.nn.Linear(4, 4).cuda()(torch.randn(2, 4, device=cuda)).dtype == torch.float16
