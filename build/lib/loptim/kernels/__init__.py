"""Fused CPU kernels for the learned updates, compiled at first use and cached; the pure PyTorch updates stay the
reference (tests/test_kernels.py checks both agree to float tolerance).

A kernel is one C++ file in this folder with an `extern "C"` entry point, built by the system's C++ compiler
(`$CXX`, default g++) with `-O3 -march=native -fopenmp` into `$LOPTIM_CACHE/kernels/` under a name that hashes the
source, the flags and the machine, and loaded with ctypes (plain pointers: no PyTorch headers, so a build takes
about a second). Why not `torch.compile` or `torch.utils.cpp_extension`: docs/design.md, performance facts.
Where no compiler works, or with `LOPTIM_KERNELS=0`, the optimizers run the reference path and say so once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from importlib import resources
from pathlib import Path

from loptim.io import FILE_MODE, cache_dir

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
_loaded: dict[str, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """False when `LOPTIM_KERNELS=0` (every optimizer then runs its reference PyTorch path)."""
    return os.environ.get("LOPTIM_KERNELS", "1") != "0"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def build(name: str) -> Path:
    """Compile loptim/kernels/NAME.cpp into the cache (once per source, flags and machine); the library's path."""
    source = resources.files("loptim.kernels").joinpath(f"{name}.cpp").read_bytes()
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on PATH")
    key = hashlib.sha256(
        b"\0".join(
            [source, " ".join(FLAGS).encode(), compiler.encode(), platform.machine().encode(), platform.node().encode()]
        )
    ).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"{name}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / f"{name}.cpp"
        src.write_bytes(source)
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *FLAGS, str(src), "-o", str(built)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building the {name} kernel failed: {result.stderr.strip()[-2000:]}")
        os.chmod(built, FILE_MODE | 0o111)
        os.replace(built, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


def load(name: str) -> ctypes.CDLL | None:
    """The kernel library NAME, built if needed; None (with one warning) when kernels are off or cannot be built."""
    if not enabled():
        return None
    if name not in _loaded:
        try:
            _loaded[name] = ctypes.CDLL(str(build(name)))
        except (OSError, RuntimeError) as error:
            warnings.warn(
                f"loptim: the fused {name} kernel is unavailable ({error}); using the slower reference "
                "PyTorch update. Install g++ (or set CXX) to get it.",
                RuntimeWarning,
                stacklevel=2,
            )
            _loaded[name] = None
    return _loaded[name]
