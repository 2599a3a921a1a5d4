"""CUDA-on-CPU: compile the project's ``.cu`` kernels with g++ and launch them like CuPy.

``CpuModule(source, options)`` mirrors ``cupy.RawModule`` (``get_function``, constants) and its
kernels are called like ``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=0)`` with
numpy arrays for device pointers and numpy scalars for values. See ``cuda_cpu.h`` for how the
threads of a block run (fibers, or std::threads for the sanitizer builds).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KERNELS = HERE.parents[1] / "kernels"
BUILD = Path(tempfile.gettempdir()) / "srcnn-fast-cudacpu"
_GLOBAL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(")

VARIANTS = {
    "fibers": [],
    "tsan": ["-DCUDACPU_THREADS", "-fsanitize=thread", "-g"],
    "asan": ["-DCUDACPU_THREADS", "-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
}


def kernel_names(source: str) -> list[str]:
    return _GLOBAL.findall(source)


def translation_unit(source_path: Path, main: str = "") -> str:
    """C++ that includes the harness, the kernel file and one launcher per kernel."""
    names = kernel_names(source_path.read_text())
    launchers = "\n".join(
        f'extern "C" int cudacpu_launch_{n}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
        f"unsigned by, unsigned bz, size_t smem, void** args) {{ return cudacpu::launch({n}, "
        f"dim3(gx, gy, gz), dim3(bx, by, bz), smem, args); }}"
        for n in names
    )
    return (
        '#include "cuda_cpu.h"\n'
        f'#include "{source_path}"\n'
        '#include "cuda_cpu_runtime.h"\n'
        f"{launchers}\n{main}\n"
    )


def sanitizer_run(variant: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a child process with the sanitizer runtime preloaded, so that a
    harness library built with ``variant`` ("tsan" or "asan") can be loaded into it."""
    import pytest

    library = {"tsan": "libtsan.so", "asan": "libasan.so"}[variant]
    runtime = subprocess.run(
        ["g++", f"-print-file-name={library}"], capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(runtime):
        pytest.skip(f"g++ has no {library} here")
    repo = HERE.parents[1]
    env = dict(
        os.environ,
        LD_PRELOAD=runtime,
        ASAN_OPTIONS="detect_leaks=0",
        TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0",
        PYTHONPATH=f"{repo / 'tests'}{os.pathsep}{repo}",
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )


def have_compiler() -> bool:
    """g++ is what runs the kernels on the CPU; tests skip (with this reason) without it."""
    import shutil

    return shutil.which("g++") is not None


def build(
    source: Path, options: Sequence[str] = (), variant: str = "fibers", main: str = ""
) -> Path:
    """Compile (cached by content) to a shared library, or to an executable if ``main``."""
    source = Path(source).resolve()
    unit = translation_unit(source, main)
    flags = [
        "g++",
        "-std=c++20",
        "-O1",
        "-fno-strict-aliasing",
        f"-I{HERE}",
        f"-I{KERNELS}",
        "-x",
        "c++",
        *options,
        *VARIANTS[variant],
    ]
    if not main:
        flags += ["-shared", "-fPIC"]
    deps = [source.read_text(), unit, *(p.read_text() for p in sorted(KERNELS.glob("*.cuh")))]
    deps += [p.read_text() for p in sorted(HERE.glob("*.h"))]
    key = hashlib.sha256("\0".join([*flags, *deps]).encode()).hexdigest()[:20]
    out = BUILD / f"{source.stem}-{variant}-{key}{'' if main else '.so'}"
    if not out.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        unit_path = BUILD / f"{source.stem}-{key}.cpp"
        unit_path.write_text(unit)
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        run = subprocess.run(
            [*flags, str(unit_path), "-o", str(tmp), "-pthread"], capture_output=True, text=True
        )
        if run.returncode:
            raise RuntimeError(f"g++ failed for {source.name}:\n{run.stderr[-4000:]}")
        tmp.replace(out)
    return out


class CpuKernel:
    def __init__(self, module: CpuModule, name: str) -> None:
        self.name = name
        self._module = module
        self._fn = getattr(module.lib, f"cudacpu_launch_{name}")
        self._fn.restype = ctypes.c_int
        self.max_dynamic_shared_size_bytes = 48 * 1024

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None) -> None:
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        holders = [_ctype(a) for a in args]
        argv = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        rc = self._fn(
            *map(ctypes.c_uint, grid), *map(ctypes.c_uint, block), ctypes.c_size_t(shared_mem), argv
        )
        if rc:
            raise RuntimeError(f"{self.name}: {self._module.error()}")


def _ctype(value):
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, np.int32):
        return ctypes.c_int32(int(value))
    if isinstance(value, np.int64):
        return ctypes.c_int64(int(value))
    if isinstance(value, np.float32):
        return ctypes.c_float(float(value))
    raise TypeError(f"kernel argument of type {type(value).__name__}: use numpy arrays/scalars")


class CpuModule:
    """A ``.cu`` file compiled for the CPU; the analogue of ``cupy.RawModule``."""

    def __init__(self, source: Path, options: Sequence[str] = (), variant: str = "fibers"):
        self.path = build(Path(source), options, variant)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.cudacpu_error.restype = ctypes.c_char_p

    def error(self) -> str:
        return self.lib.cudacpu_error().decode()

    def get_function(self, name: str) -> CpuKernel:
        return CpuKernel(self, name)

    def set_constant(self, name: str, array: np.ndarray) -> None:
        """Copy ``array`` into the ``__constant__`` variable ``name`` (a plain global here)."""
        data = np.ascontiguousarray(array)
        target = ctypes.c_char.in_dll(self.lib, name)
        ctypes.memmove(ctypes.addressof(target), data.ctypes.data, data.nbytes)
