import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parent / "train_script.py"


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "single"), "offline", "8"],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    # two processes, each with half the batch in two micro-batches (gradient accumulation)
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(SCRIPT),
            str(tmp_path / "double"),
            "offline",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one = load_file(tmp_path / "single" / "gradients.safetensors")
    two = load_file(tmp_path / "double" / "gradients.safetensors")
    assert one.keys() == two.keys() and len(one) > 10
    assert torch.allclose(one["__loss__"], two["__loss__"], rtol=1e-5, atol=1e-7)
    assert one["__loss__"].abs().item() > 0.1
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-7), name
    largest = max(one[name].abs().max().item() for name in one if name != "__loss__")
    assert largest > 1e-4  # the gradients are not trivially zero
