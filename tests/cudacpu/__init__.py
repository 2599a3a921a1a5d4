"""CUDA-on-CPU: compile the project's ``.cu`` kernels with g++ and launch them like CuPy.

``CpuModule(source, options)`` mirrors ``cupy.RawModule`` (``get_function``, constants) and its
kernels are called like ``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=0)`` with
numpy arrays for device pointers and numpy scalars for values. See ``cuda_cpu.h`` for how the
threads of a block run (fibers, or std::threads for the sanitizer builds).

Every launch is also checked for what a fixed block order hides (``launch()`` in
``cuda_cpu_runtime.h``): the output buffers -- the whole arrays behind every non-``const``
pointer argument -- are watched while the blocks run in three orders, and the launch raises
``OwnershipError`` if a byte is written by two blocks, by a block whose tile does not hold it,
or not at all by the block whose tile does (tiles: ``ownership.py``), or if the result depends
on the order.
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
from numpy.lib.array_utils import byte_bounds

HERE = Path(__file__).resolve().parent
KERNELS = HERE.parents[1] / "kernels"
BUILD = Path(tempfile.gettempdir()) / "srcnn-fast-cudacpu"
_GLOBAL = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(")
#: Seed of the shuffled block order (the same shuffle for the same grid in every run).
ORDER_SEED = 20

VARIANTS = {
    "fibers": [],
    "tsan": ["-DCUDACPU_THREADS", "-fsanitize=thread", "-g"],
    "asan": ["-DCUDACPU_THREADS", "-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
}


def kernel_names(source: str) -> list[str]:
    return _GLOBAL.findall(source)


def kernel_params(source: str) -> dict[str, list[tuple[str, bool]]]:
    """Per kernel, per parameter: its name, and whether it is a pointer the kernel may write
    (no ``const`` before its ``*``). Those are the buffers the launcher watches."""
    kernels = {}
    for found in _GLOBAL.finditer(source):
        params = source[found.end() : source.index(")", found.end())].split(",")
        kernels[found.group(1)] = [
            (re.findall(r"\w+", p)[-1], "*" in p and "const" not in p[: p.index("*")])
            for p in params
            if p.strip()
        ]
    return kernels


def translation_unit(source_path: Path, main: str = "") -> str:
    """C++ that includes the harness, the kernel file and one launcher per kernel."""
    names = kernel_names(source_path.read_text())
    launchers = "\n".join(
        f'extern "C" int cudacpu_launch_{n}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
        f"unsigned by, unsigned bz, size_t smem, void** args, const cudacpu::Watch* watches, "
        f"unsigned n_watches, unsigned long long seed, cudacpu::Violation* violation) {{ "
        f"return cudacpu::launch({n}, dim3(gx, gy, gz), dim3(bx, by, bz), smem, args, watches, "
        f"n_watches, seed, violation); }}"
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


class OwnershipError(RuntimeError):
    """A launch's blocks wrote outside their tiles, twice, too little, or order-dependently."""


class _Watch(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("bytes", ctypes.c_size_t), ("owner", ctypes.c_void_p)]


class _Violation(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("watch", ctypes.c_uint),
        ("byte", ctypes.c_size_t),
        ("block", ctypes.c_longlong),
        ("other", ctypes.c_longlong),
        ("count", ctypes.c_size_t),
    ]


_VIOLATIONS = {
    1: "written by two blocks, {block} and {other}",
    2: "written by block {block}, but the tile that holds it is {other}'s",
    3: "not written by block {other}, whose tile holds it",
    4: "written by block {block} with a value that depends on what the buffer held before",
    5: "differs between block orders (a block reads what another block writes); last writer "
    "{block}",
}


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _spans_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def watched_buffers(written: list[bool], args: Sequence) -> list[tuple[int, int]]:
    """Address spans to watch: the whole allocation behind each written pointer argument (so a
    write past the view, e.g. into the next frame, is seen too), or just the view's own span
    where an input argument lives in the same allocation."""
    outputs = [a for a, w in zip(args, written, strict=True) if w and isinstance(a, np.ndarray)]
    inputs = [
        byte_bounds(a)
        for a, w in zip(args, written, strict=True)
        if not w and isinstance(a, np.ndarray)
    ]
    spans = []
    for a in outputs:
        whole = byte_bounds(_root(a))
        spans.append(whole if not any(_spans_overlap(whole, i) for i in inputs) else byte_bounds(a))
    spans = _merge(spans)
    for span in spans:
        if any(_spans_overlap(span, i) for i in inputs):
            raise ValueError("an input argument overlaps an output argument: cannot watch it")
    return spans


class CpuKernel:
    def __init__(self, module: CpuModule, name: str) -> None:
        self.name = name
        self._module = module
        self._fn = getattr(module.lib, f"cudacpu_launch_{name}")
        self._fn.restype = ctypes.c_int
        self._params = module.params[name]
        self._written = [w for _, w in self._params]
        self.max_dynamic_shared_size_bytes = 48 * 1024

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None) -> None:
        from .ownership import Launch, owner_map

        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        holders = [_ctype(a) for a in args]
        argv = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        launch = Launch(self.name, grid, block, tuple(args), self._module.options)
        spans = watched_buffers(self._written, args)
        owners = []
        for lo, hi in spans:
            views = {
                i: a.ctypes.data
                for i, (a, w) in enumerate(zip(args, self._written, strict=True))
                if w and isinstance(a, np.ndarray) and lo <= a.ctypes.data < hi
            }
            owners.append(owner_map(launch, lo, hi - lo, views))
        watches = (_Watch * max(1, len(spans)))(
            *[_Watch(lo, hi - lo, o.ctypes.data) for (lo, hi), o in zip(spans, owners, strict=True)]
        )
        violation = _Violation()
        rc = self._fn(
            *map(ctypes.c_uint, grid),
            *map(ctypes.c_uint, block),
            ctypes.c_size_t(shared_mem),
            argv,
            watches,
            ctypes.c_uint(len(spans)),
            ctypes.c_ulonglong(ORDER_SEED),
            ctypes.byref(violation),
        )
        if rc == 1:
            raise RuntimeError(f"{self.name}: {self._module.error()}")
        if rc == 2:
            raise OwnershipError(self._describe(launch, violation, spans[violation.watch][0]))

    def _describe(self, launch, v: _Violation, base: int) -> str:
        def block(b: int) -> str:
            if b < 0:
                return "no block"
            gx, gy, _ = launch.grid
            return f"({b % gx}, {b // gx % gy}, {b // (gx * gy)})"

        address, where = base + v.byte, f"byte {v.byte} of a watched buffer"
        for i, (a, w) in enumerate(zip(launch.args, self._written, strict=True)):
            if w and isinstance(a, np.ndarray) and a.flags.c_contiguous:
                offset = address - a.ctypes.data
                if 0 <= offset < a.nbytes:
                    index = np.unravel_index(offset // a.itemsize, a.shape)
                    where = f"{self._params[i][0]}[{', '.join(str(int(k)) for k in index)}]"
        what = _VIOLATIONS[v.kind].format(block=block(v.block), other=block(v.other))
        return (
            f"{self.name} grid {launch.grid} block {launch.block}: {where} {what} "
            f"({v.count} bytes in violation)"
        )


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
        self.options = tuple(options)
        self.params = kernel_params(Path(source).read_text())
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
