"""The dtype decision (vlmrl.model.precision): bf16 only where the device runs it natively."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from vlmrl.model import precision


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU does or does not have native bf16."""

    def set_native(native: bool) -> None:
        facts = precision.CpuPrecision("AVX512" if native else "AVX2", native, "", native, "cpu flags")
        monkeypatch.setattr(precision, "cpu_precision", lambda: facts)

    return set_native


def test_cuda_with_bf16_computes_and_stores_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.autocast_dtype("cuda") == torch.bfloat16
    assert precision.weights_dtype("cuda") == torch.bfloat16


def test_cuda_without_bf16_stays_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.autocast_dtype("cuda") == torch.float32
    assert precision.weights_dtype("cuda") == torch.float32


def test_cpu_with_native_bf16_autocasts_to_bf16_with_float32_weights(cpu_with):
    cpu_with(True)
    assert precision.autocast_dtype("cpu") == torch.bfloat16
    assert precision.weights_dtype("cpu") == torch.float32
    with precision.autocast("cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")


def test_cpu_without_native_bf16_uses_float32_and_no_autocast(cpu_with):
    cpu_with(False)
    assert precision.autocast_dtype("cpu") == torch.float32
    assert precision.weights_dtype("cpu") == torch.float32
    with precision.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_explicit_bf16_on_cpu_without_native_bf16_wins_and_warns(cpu_with):
    cpu_with(False)
    with pytest.warns(precision.EmulatedBfloat16Warning, match="emulated"):
        assert precision.autocast_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.warns(precision.EmulatedBfloat16Warning):
        assert precision.weights_dtype("cpu", "bf16") == torch.bfloat16


def test_explicit_choices_on_a_native_cpu_do_not_warn(cpu_with):
    cpu_with(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.autocast_dtype("cpu", "bfloat16") == torch.bfloat16
        assert precision.autocast_dtype("cpu", "float32") == torch.float32


def test_unknown_dtype_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match="'half-ish' is not one of auto/float32"):
        precision.autocast_dtype("cpu", "half-ish")


@pytest.mark.parametrize(
    ("cap", "allows"),
    [
        ("", True),
        ("ALL", True),
        ("AVX2", False),
        ("avx512_core", False),
        ("AVX512_CORE_BF16", True),
        ("AVX512_CORE_AMX", True),
        ("SOMETHING_NEW", True),
    ],
)
def test_onednn_cap(cap, allows):
    assert precision._onednn_allows_bf16(cap) is allows


def _decide_in_subprocess(environment: dict[str, str]) -> str:
    code = "from vlmrl.model import precision; print(precision.describe()['native_bf16'])"
    env = {**os.environ, **environment}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_avx2_emulation_variables_make_the_decision_float32():
    """ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 must decide like an AVX2-only CPU."""
    assert (
        _decide_in_subprocess({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}).strip()
        == "False"
    )


def test_the_probe_agrees_with_the_flags_on_this_machine():
    flags = precision._processor_flags()
    if flags is None:
        pytest.skip("this torch exposes no CPU flags; the probe is the only source")
    if os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("ATEN_CPU_CAPABILITY"):
        pytest.skip("kernel caps are set: flags and speed disagree by design")
    assert precision._probe_native_bf16() == flags
