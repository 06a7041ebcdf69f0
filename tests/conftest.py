"""Every test runs on one torch thread (bit-for-bit comparisons need it) and restores the caller's setting, on
AVX2 kernels: ATen, MKL and oneDNN pick other kernels, with other roundings, on AVX-512 machines, and the golden
results (tests/golden) were made with AVX2's. Set before torch is imported; a setting in the environment wins."""

import os
import platform

if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
