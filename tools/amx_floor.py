"""The AMX kernel's work outside its tile instructions, timed on any CPU (issue 28).

    python tools/amx_floor.py [--scale 3] [--size 640x360] [--seconds 30]

No AMX CPU has been lent to this project yet, so the AMX kernel's speed is unmeasured; but most
of its code is not tile instructions: the vector code that rescales each tile product's C tile
and packs it into the next B tile, the border columns, conv3's sums from the ring and the
input's packing. This times exactly that: it copies the package into a temporary directory
with every emulated tile op (``_t_zero``, ``_t_load``, ``_t_store``, ``_t_dpbsud``,
``_t_dpbf16ps``) made an inlined no-op, and calls ``AmxBackend.emulate_luma`` there for int8
and bf16, interleaved in one process with our VNNI int8 and bf16 kernels (the ``cpu`` backend)
for comparison. The AMX kernel's time on an AMX CPU is this floor plus its tile products
(8 per 16 pixels for int8, 14 for bf16: ~8 and ~14 cycles per pixel at one tile op per 16
cycles) and their loads and stores.

The outputs of the floor are meaningless (no products); only its time is. It reads the kernel's
source, so a change to the tile ops' overloads makes it stop with a message, not mis-measure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from conftest import machine, make_lr_plane  # noqa: E402
from precision_speed import interleaved  # noqa: E402

from srcnn_fast.backends import create_backend  # noqa: E402
from srcnn_fast.infer import shipped_weights_path  # noqa: E402
from srcnn_fast.model import SRCNNWeights  # noqa: E402

#: The emulated branch of each tile op's overload in cpu_amx.py, made a no-op.
EMULATED_OPS = (
    ": _emu_zero(e, tile)",
    ": _emu_load(e, tile, array, index, stride)",
    ": _emu_store(e, tile, array, index, stride)",
    ": _emu_dot(e, c, a, b, False)",
    ": _emu_dot(e, c, a, b, True)",
)
FLOOR_PACKAGE = "srcnn_fast_amx_floor"


def floor_package(where: Path) -> object:
    """The package copied under ``where`` with the emulated tile ops as no-ops: its cpu_amx."""
    copy = where / FLOOR_PACKAGE
    shutil.copytree(REPO / "srcnn_fast", copy, ignore=shutil.ignore_patterns("__pycache__"))
    kernel = copy / "backends" / "cpu_amx.py"
    source = kernel.read_text()
    for op in EMULATED_OPS:
        if source.count(op) != 1:
            raise SystemExit(f"amx_floor: cpu_amx.py no longer has {op.lstrip(': ')!r} once")
        source = source.replace(op, ": None")
    kernel.write_text(source)
    # Its compiled kernels go with it (the user's cache would keep a folder per temporary path).
    os.environ["NUMBA_CACHE_DIR"] = str(where / "numba-cache")
    sys.path.insert(0, str(where))
    return importlib.import_module(f"{FLOOR_PACKAGE}.backends.cpu_amx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--size", default="640x360", help="LR width x height")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    weights = SRCNNWeights.load(shipped_weights_path(args.scale))
    plane = make_lr_plane(width, height)
    # Our kernels keep the user's cache: their module is imported before the copy's setting.
    importlib.import_module("srcnn_fast.backends.cpu")
    with tempfile.TemporaryDirectory() as where:
        cpu_amx = floor_package(Path(where))
        calls = {}
        for precision in ("int8", "bf16"):
            floor = cpu_amx.AmxBackend(weights, precision)
            calls[f"AMX {precision} floor"] = lambda b=floor: b.emulate_luma(plane)
        for precision in ("int8", "bf16"):
            backend = create_backend("cpu", weights, precision)
            calls[f"cpu {precision}"] = lambda b=backend: b.upscale_luma(plane)
        for call in calls.values():  # compile, plan, warm up
            call()
            call()
        times = interleaved(calls, args.seconds)
    cpu = machine()
    rounds = len(next(iter(times.values())))
    print(
        f"{cpu['cpu']} (family {cpu['family']}, model {cpu['model']}), {width}x{height} "
        f"x{args.scale}, {rounds} rounds"
    )
    for name, values in times.items():
        print(
            f"{name:16s} median {statistics.median(values) * 1e3:7.1f} ms, best "
            f"{min(values) * 1e3:7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
