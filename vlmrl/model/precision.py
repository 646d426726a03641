"""The one place that decides which floating-point types a device computes in.

Why this exists: on a CPU without native bf16 instructions (AVX2-only machines; no
AVX512-BF16, no AMX), PyTorch emulates bf16 matrix products about 100 times slower than
float32 (measured: 0.9 GFLOP/s against 82 GFLOP/s), so a bf16 autocast that halves step time
on one laptop makes a two-minute job take an hour on another. Every autocast and every "auto"
dtype in vlmrl asks this module, so the choice is the same everywhere and follows the machine.

Two decisions:
- `weights_dtype(device, requested)`: what `VLM.load` stores the parameters in. "auto" is
  bf16 on a CUDA GPU that supports it, float32 everywhere else (CPU training keeps float32
  master weights; autocast handles the compute).
- `autocast_dtype(device, requested)`: what training and alignment loops compute matmuls in.
  "auto" is bf16 on GPUs that support it, bf16 on CPUs with native bf16, float32 otherwise
  (autocast off). An explicit choice always wins; choosing bf16 on a CPU that would emulate it
  warns, since it is legal but very slow.

How native CPU bf16 is detected: the processor must report AVX512-BF16 or AMX (torch's cpuinfo
flags), and nothing may cap the kernels below those instructions: oneDNN, which runs CPU bf16
matmuls, honours `ONEDNN_MAX_CPU_ISA`, and PyTorch's own kernels honour
`ATEN_CPU_CAPABILITY`. Setting `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` therefore
makes an AVX-512 machine decide (and run) like an AVX2-only one. Where torch does not expose
the flags, a short timing probe (bf16 against float32 matmul, cached per process) decides.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass

import torch

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# oneDNN's ISA names in increasing order of capability (its documented ONEDNN_MAX_CPU_ISA
# values); bf16 dot products start at AVX512_CORE_BF16.
_ONEDNN_ISA_ORDER = [
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512_AMX_FP16",
]
_ONEDNN_UNCAPPED = {"", "ALL", "DEFAULT"}


class EmulatedBfloat16Warning(UserWarning):
    """bf16 was chosen explicitly on a CPU that emulates it (about 100x slower than float32)."""


@dataclass(frozen=True)
class CpuPrecision:
    """What `vlmrl info` shows: the CPU's capability and the resulting training dtype."""

    capability: str  # torch's kernel capability (honours ATEN_CPU_CAPABILITY)
    processor_bf16: bool  # the processor reports AVX512-BF16 or AMX
    onednn_cap: str  # ONEDNN_MAX_CPU_ISA, or "" when unset
    native_bf16: bool
    how: str  # "cpu flags" or "timing probe"


def parse_dtype(name: str | torch.dtype, what: str = "dtype") -> torch.dtype | None:
    """A dtype from its name; None for "auto". Raises naming the accepted values otherwise."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower()
    if key == "auto":
        return None
    if key not in DTYPE_NAMES:
        raise ValueError(f"{what} '{name}' is not one of auto/{'/'.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[key]


def _onednn_allows_bf16(cap: str) -> bool:
    cap = cap.strip().upper()
    if cap in _ONEDNN_UNCAPPED:
        return True
    if cap not in _ONEDNN_ISA_ORDER:
        return True  # an ISA name this table does not know: do not guess it away
    return _ONEDNN_ISA_ORDER.index(cap) >= _ONEDNN_ISA_ORDER.index("AVX512_CORE_BF16")


def _processor_flags() -> bool | None:
    """True/False from torch's cpuinfo flags, or None where this torch does not expose them."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if callable(check)]
    if not checks:
        return None
    try:
        return any(bool(check()) for check in checks)
    except Exception:  # a private API that changed shape: fall back to the probe
        return None


@functools.lru_cache(maxsize=1)
def _probe_native_bf16() -> bool:
    """Time a small bf16 and float32 matmul; emulated bf16 is tens of times slower."""

    def best_time(dtype: torch.dtype) -> float:
        a = torch.randn(192, 192).to(dtype)
        b = torch.randn(192, 192).to(dtype)
        a @ b  # warm-up: first calls pick kernels
        times = []
        for _ in range(3):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    return best_time(torch.bfloat16) < 3.0 * best_time(torch.float32)


@functools.lru_cache(maxsize=1)
def cpu_precision() -> CpuPrecision:
    """The CPU's bf16 situation, read once per process (environment caps included)."""
    capability = str(torch.backends.cpu.get_cpu_capability())
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    flags = _processor_flags()
    how = "cpu flags"
    if flags is None:
        flags = _probe_native_bf16()
        how = "timing probe"
    # ATEN_CPU_CAPABILITY below AVX512 also caps the kernels that convert and accumulate.
    aten_allows = "AVX512" in capability.upper()
    native = bool(flags) and aten_allows and _onednn_allows_bf16(onednn_cap)
    return CpuPrecision(capability, bool(flags), onednn_cap, native, how)


def _cuda_bf16(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported())
    except Exception:
        return False


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def weights_dtype(device: str | torch.device, requested: str | torch.dtype = "auto") -> torch.dtype:
    """The dtype parameters are stored in: bf16 on capable GPUs, float32 elsewhere."""
    device = _as_device(device)
    chosen = parse_dtype(requested)
    if chosen is not None:
        if chosen == torch.bfloat16 and device.type == "cpu" and not cpu_precision().native_bf16:
            _warn_emulated()
        return chosen
    if device.type == "cuda" and _cuda_bf16(device):
        return torch.bfloat16
    return torch.float32


def autocast_dtype(device: str | torch.device, requested: str | torch.dtype = "auto") -> torch.dtype:
    """The dtype training computes in. float32 means: no autocast.

    auto: bf16 on GPUs with bf16, fp16 on older GPUs would need loss scaling, so float32 there;
    bf16 on CPUs with native bf16 (AVX512-BF16 or AMX); float32 on every other CPU.
    """
    device = _as_device(device)
    chosen = parse_dtype(requested)
    if chosen is not None:
        if chosen == torch.bfloat16 and device.type == "cpu" and not cpu_precision().native_bf16:
            _warn_emulated()
        return chosen
    if device.type == "cuda":
        return torch.bfloat16 if _cuda_bf16(device) else torch.float32
    if device.type == "cpu" and cpu_precision().native_bf16:
        return torch.bfloat16
    return torch.float32


def autocast(device: str | torch.device, requested: str | torch.dtype = "auto"):
    """A `torch.autocast` context for the decided dtype (disabled when that is float32)."""
    device = _as_device(device)
    dtype = autocast_dtype(device, requested)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def _warn_emulated() -> None:
    info = cpu_precision()
    warnings.warn(
        f"bfloat16 was requested on a CPU without native bf16 (capability {info.capability}, "
        f"AVX512-BF16/AMX: {'yes' if info.processor_bf16 else 'no'}"
        f"{', ONEDNN_MAX_CPU_ISA=' + info.onednn_cap if info.onednn_cap else ''}): it is emulated, "
        "about 100x slower than float32. Use --dtype auto or float32 unless you mean it.",
        EmulatedBfloat16Warning,
        stacklevel=3,
    )


def describe(device: str | torch.device = "cpu") -> dict[str, object]:
    """The facts a timing depends on, for `vlmrl info` and every benchmark's JSON and table."""
    info = cpu_precision()
    return {
        "cpu_capability": info.capability,
        "cpu_bf16_instructions": info.processor_bf16,
        "onednn_max_cpu_isa": info.onednn_cap or "unset",
        "native_bf16": info.native_bf16,
        "detected_by": info.how,
        "training_dtype": str(autocast_dtype(device)).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


def summary_line(device: str | torch.device = "cpu") -> str:
    """One line for a benchmark's output: where its figures were measured."""
    facts = describe(device)
    return (
        f"CPU capability {facts['cpu_capability']}, native bf16: {'yes' if facts['native_bf16'] else 'no'}"
        f" (ONEDNN_MAX_CPU_ISA {facts['onednn_max_cpu_isa']}), training dtype {facts['training_dtype']},"
        f" {facts['threads']} torch threads"
    )
