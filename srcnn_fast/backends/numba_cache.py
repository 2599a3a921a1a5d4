"""What the cpu backend's Numba modules share: where their compiled kernels are cached, and
the lock that runs one of their kernels at a time. Both :mod:`.cpu` (the network) and
:mod:`.cpu_pixels` (the pixels around it) import this; neither imports the other's privates.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numba

from .simd import W, _host_features

#: The instruction sets a kernel variant may use, by LLVM feature name, and the tag each adds
#: to the cache folder's name.
ISA_TAGS = {
    "avx512bf16": "bf16",
    "avx512vnni": "vnni",
    "avxvnni": "avxvnni",
    "amx-tile": "amx",
}


def isa_tag(features: dict[str, bool] | None = None) -> str:
    """The optional instruction sets this CPU has, for the cache folder's name: e.g.
    ``bf16-vnni`` on AMD Zen 4, ``bf16-vnni-avxvnni-amx`` on an Intel Xeon with AMX."""
    features = _host_features() if features is None else features
    return "-".join(tag for name, tag in ISA_TAGS.items() if features.get(name)) or "base"


#: Numba's default (workqueue) threading layer aborts on concurrent parallel calls, and a
#: backend's scratch buffers are shared by its calls: one kernel runs at a time per process
#: (each already uses every core, so this costs no throughput).
KERNEL_LOCK = threading.Lock()


def cache_dir(install: Path | None = None) -> Path:
    """Per-user folder for the compiled kernels (so a read-only site-packages works).

    Under ``NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/srcnn-fast`` (``~/.cache/...``),
    one sub-folder per vector width and set of optional instruction sets (:func:`isa_tag`: a
    bf16, VNNI or AMX build is never loaded on a CPU without them; Numba's own index is keyed
    by the CPU's name and features too), per version of the kernel sources and per install (the
    package folder, ``install``: this one by default). Numba only notices edits to the module
    that defines a function, so code compiled into another module's kernels must version the
    folder: ``simd.py``'s and ``amx.py``'s intrinsics, ``cpu.py``'s functions that ``cpu_amx``
    inlines, and ``polyphase.py``; and Numba keys its index files by the source file's path,
    so another install's files (a second venv with the same sources) would make
    ``cpu.is_cached`` say yes while this install still compiles for ~10 s.
    """
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "srcnn-fast")
    here = Path(__file__).resolve().parent
    sources = [here / "cpu.py", here / "simd.py", here / "amx.py", here.parent / "polyphase.py"]
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    install = (install or here.parent).resolve()
    where = hashlib.sha256(os.fsencode(install)).hexdigest()[:8]
    return Path(root) / f"numba-w{W}-{isa_tag()}-{version}-{where}"


def cache_here() -> str:
    """Point Numba's cache at :func:`cache_dir` while a module defines its kernels (Numba fixes
    a function's cache folder when it is decorated); returns the setting to restore with
    :func:`cache_restore` at the end of that module."""
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(cache_dir())
    return saved


def cache_restore(saved: str) -> None:
    numba.config.CACHE_DIR = saved
