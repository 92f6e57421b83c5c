"""Device selection and mixed precision.

Device and precision are arguments, not code paths: every trainer takes ``device`` and
``precision`` strings and resolves them here.
"""

from __future__ import annotations

import contextlib
import operator

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """The device strings that would resolve on this machine, e.g. ``["cpu", "cuda:0"]``."""
    devices = ["cpu"]
    devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a ``torch.device`` that exists.

    ``"auto"`` picks CUDA, then MPS, then CPU.

    Args:
        device: a device name or a ``torch.device``.

    Raises:
        ValueError: the string is not a device name, or names a device this machine lacks.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(
            f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps"
        ) from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (dev.index is not None and dev.index >= count):
            raise ValueError(
                f"device {device!r} is not available; this machine has: "
                f"{', '.join(available_devices())}"
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(
                f"device {device!r} is not available; this machine has: "
                f"{', '.join(available_devices())}"
            )
        return dev
    raise ValueError(f"unsupported device {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` if ``precision`` is unknown or cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision 'fp16' needs a GPU; on CPU use 'bf16' or 'fp32'")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware: a CUDA device that supports bf16,
    or a CPU with AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` itself, or for ``"auto"``: ``"bf16"`` where the device has native bf16
    (:func:`native_bf16`), else ``"fp32"``. Raises ``ValueError`` as :func:`check_precision`."""
    check_precision(precision, device)
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` on ``device`` (``"auto"`` resolved); a no-op for
    fp32."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(precision, device) == "fp16")


def seeded_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    """``generator`` if given, else a generator on ``device`` seeded with ``seed`` (None: None,
    the global RNG). The models' ``sample``/``generate`` take either, as ``generate_text`` does."""
    if generator is not None or seed is None:
        return generator
    try:
        value = operator.index(seed)  # ints, NumPy ints; not floats, bools or strings
    except TypeError:
        value = None
    if value is None or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer or None, got {seed!r}")
    return torch.Generator(device).manual_seed(value)
