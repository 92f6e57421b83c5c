from pathlib import Path

import pytest
import torch

from genai.core.device import (
    autocast,
    available_devices,
    check_precision,
    grad_scaler,
    native_bf16,
    resolve_device,
    resolve_precision,
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


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    for fixed in ("fp32", "bf16"):
        assert resolve_precision(fixed, cpu) == fixed
    flags = (
        "avx512_bf16" in Path("/proc/cpuinfo").read_text()
        if Path("/proc/cpuinfo").exists()
        else None
    )
    if flags is not None:  # Linux: the kernel's view of the CPU agrees with torch's
        amx = "amx_bf16" in Path("/proc/cpuinfo").read_text()
        assert native_bf16(cpu) == (flags or amx)
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    for avx512_bf16, amx, expected in [
        (True, False, "bf16"),
        (False, True, "bf16"),
        (False, False, "fp32"),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", cpu) == expected
        dtype = torch.bfloat16 if expected == "bf16" else torch.float32
        with autocast(cpu, "auto"):
            assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == dtype
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("bfloat16", cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_scaler():
    cuda = resolve_device("cuda")
    assert grad_scaler(cuda, "fp16").is_enabled()
    with autocast(cuda, "fp16"):
        assert torch.nn.Linear(4, 4).cuda()(torch.randn(2, 4, device=cuda)).dtype == torch.float16
