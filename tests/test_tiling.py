"""Tiles: bit-identical to the untiled result, bounded memory, written out in bands."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from srcnn_fast import infer, tiling
from srcnn_fast.infer import Upscaler

#: Odd sizes, every layout, a 1-pixel image and a strip; tiles from 1 pixel up (each tile is a
#: full pipeline call, so the tiny tiles go with the small images).
CASES = [
    ((19, 26, 3), (4, 9)),
    ((24, 17), (5, 16)),
    ((13, 11, 4), (2, 6)),
    ((1, 1, 3), (1,)),
    ((3, 20, 2), (1, 7)),
]


@pytest.fixture(scope="module", params=["cpu", "reference"])
def upscalers(request) -> dict[int, Upscaler]:
    return {s: Upscaler(s, backend=request.param) for s in (2, 3, 4)}


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(("shape", "tiles"), CASES, ids=str)
def test_tiled_output_is_bit_identical(upscalers, scale: int, shape, tiles) -> None:
    """Tiles of every size down to one pixel, on every layout; the halo is the network's
    receptive field plus the bicubic reach, so nothing may differ, not even float32 bits."""
    up = upscalers[scale]
    rng = np.random.default_rng(scale)
    for dtype in (np.uint8, np.float32):
        image = rng.random(shape).astype(np.float32)
        if dtype == np.uint8:
            image = np.rint(image * 255).astype(np.uint8)
        whole = up(image, tile=0)
        for tile in tiles:
            tiled = up(image, tile=tile)
            differ = tiled != whole
            assert not differ.any(), (
                f"x{scale} {shape} {np.dtype(dtype)} tile {tile}: {int(differ.sum())} values "
                f"differ, max |diff| {np.abs(tiled.astype(float) - whole).max():.3g}"
            )
        bands = list(up.upscale_bands(image, tile=tiles[0]))
        assert len(bands) == -(-shape[0] // tiles[0])
        np.testing.assert_array_equal(np.concatenate(bands), whole)


def test_alpha_through_the_network_is_tiled_identically(upscalers) -> None:
    up = Upscaler(2, backend=upscalers[2].backend_name, alpha="network")
    image = np.random.default_rng(0).integers(0, 256, (20, 27, 4)).astype(np.uint8)
    np.testing.assert_array_equal(up(image, tile=8), up(image, tile=0))
    # The alpha went through the network: it is the network's output for that plane.
    np.testing.assert_array_equal(up(image)[..., 3], up(image[..., 3]))


def test_tiles_follow_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    up = Upscaler(2, backend="cpu")
    image = np.zeros((300, 400, 3), np.uint8)
    assert up.tile_size(image) == 0, "plenty of memory: no tiling"
    monkeypatch.setattr(
        infer, "available_memory", lambda: 4 * 1500 * infer.WORK_BYTES_PER_OUTPUT_PIXEL * 16
    )
    tile = up.tile_size(image)
    assert infer.MIN_AUTO_TILE <= tile < 400
    assert Upscaler(2, backend="cpu", tile=0).tile_size(image) == 0
    assert up.tile_size(image, tile=50) == 50


def test_tiles_follow_the_backends_free_memory_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU backend reports its own free memory (CudaBackend.free_memory): when that is the
    smaller, it sizes the tiles, however much RAM is free."""
    up = Upscaler(2, backend="cpu")
    image = np.zeros((300, 400, 3), np.uint8)
    monkeypatch.setattr(infer, "available_memory", lambda: 1 << 40)
    assert up.tile_size(image) == 0
    gpu_free = 4 * 1500 * infer.WORK_BYTES_PER_OUTPUT_PIXEL * 16
    monkeypatch.setattr(up.backend, "free_memory", lambda: gpu_free, raising=False)
    assert infer.MIN_AUTO_TILE <= up.tile_size(image) < 400


@pytest.mark.parametrize(("size", "tile", "halo"), [(50, 12, 4), (1000, 300, 6), (7, 1, 6)])
def test_every_tile_of_an_image_has_the_same_source_size(size: int, tile: int, halo: int) -> None:
    """Windows at the edges are shifted inwards, not cut: one tile shape per image, so a
    backend's per-size buffers are built once for all its tiles; and each kept part still
    has a full halo of real pixels on every side that is not the image's edge."""
    shapes = set()
    for _, tiles in tiling.tile_bands(size, size + 3, tile, halo, 2):
        for t in tiles:
            rows, cols = t.source
            shapes.add((rows.stop - rows.start, cols.stop - cols.start))
            for source, keep in zip(t.source, t.keep, strict=True):
                first, last = source.start + keep.start // 2, source.start + keep.stop // 2
                extent = size if source is rows else size + 3
                assert first - source.start >= halo or source.start == 0, t
                assert source.stop - last >= halo or source.stop == extent, t
    assert len(shapes) == 1, shapes


def test_a_tiled_image_reuses_the_cpu_plans_on_every_call() -> None:
    """One Upscaler, the same large image again (video frames, a folder of same-size photos):
    its tiles share one cached plan (geometry, folded weights, scratch buffers), built on the
    first call and reused, not rebuilt, on the next ones."""
    up = Upscaler(2, backend="cpu")
    image = np.random.default_rng(0).integers(0, 256, (50, 61, 3)).astype(np.uint8)
    first = up(image, tile=12)
    plans = dict(up.backend._plans)
    assert len(plans) == 1, sorted(plans)
    np.testing.assert_array_equal(up(image, tile=12), first)
    assert up.backend._plans.keys() == plans.keys()
    assert all(up.backend._plans[k] is plan for k, plan in plans.items()), "plans rebuilt"


def test_streamed_png_keeps_memory_bounded(tmp_path: Path) -> None:
    """A 600x800 RGB image at x4 (7.7 Mpx out) written through the CLI's path in 50-pixel
    tiles: the peak of numpy allocations stays under the output's own size (it never exists
    whole) and a small fraction of what the untiled pipeline needs (~64 bytes per output pixel)."""
    from srcnn_fast.batch import Job, run_jobs
    from srcnn_fast.imagefile import read_image, write_image
    from srcnn_fast.model import Architecture, SRCNNWeights

    weights = SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=4)
    source, target = tmp_path / "big.png", tmp_path / "big_x4.png"
    y, x = np.mgrid[0:600, 0:800]
    image = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    write_image(source, image)
    up = Upscaler(weights=weights, backend="cpu", tile=50)
    up(image[:60, :60])  # compile/warm up outside the measurement
    out_bytes = image.size * 16
    untiled = out_bytes // 3 * infer.WORK_BYTES_PER_OUTPUT_PIXEL
    tracemalloc.start()
    try:
        summary = run_jobs([Job(source, target)], up, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.done == 1, summary.errors
    message = (
        f"peak {peak / 1e6:.1f} MB; output {out_bytes / 1e6:.0f} MB, untiled {untiled / 1e6:.0f} MB"
    )
    assert peak < out_bytes * 0.75 and peak < untiled / 20, message
    expected = Upscaler(weights=weights, backend="cpu")(image, tile=0)
    np.testing.assert_array_equal(read_image(target), expected)


#: The CLI in a child process whose free memory reads as FREE_MEMORY (so the default tiling
#: picks the same tiles on every machine), printing its peak RSS in KiB.
CLI_WITH_FREE_MEMORY = """
import resource, sys
from srcnn_fast import infer
infer.available_memory = lambda: {free}
from srcnn_fast.cli import main
code = main(sys.argv[1:])
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""
FREE_MEMORY = 512 << 20


def _cli_peak_mib(*argv: str) -> float:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", CLI_WITH_FREE_MEMORY.format(free=FREE_MEMORY), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    return int(run.stdout.split("peak")[-1]) / 1024


@pytest.mark.slow
def test_huge_image_is_tiled_in_bounded_memory_and_matches_untiled(tmp_path: Path) -> None:
    """The issue's case (a huge input through the CLI with the shipped weights and the default,
    free-memory tiling) scaled down: with the free memory read as 512 MiB, a 2400 x 2400 RGB
    PNG at x2 is upscaled in 4 bands of 4 tiles (23 Mpx out, ~1.5 GB of untiled working memory).
    Its peak RSS, less a small image's through the same path (interpreter, libraries, compiled
    kernels), stays under a quarter of the untiled need; and its pixels equal the untiled
    result of crops around a tile corner and at the image's corner, where tiling errs first."""
    from srcnn_fast.imagefile import read_image, write_image, write_image_bands

    size = 2400
    source, small = tmp_path / "huge.png", tmp_path / "small.png"
    y = np.arange(size, dtype=np.uint32)[:, None]
    x = np.arange(size, dtype=np.uint32)[None, :]

    def pattern(rows: np.ndarray) -> np.ndarray:
        return np.stack([(x ^ rows) % 256, (x + rows) % 256, (x * 3 + rows // 7) % 256], -1)

    def bands():
        for start in range(0, size, 200):
            yield pattern(y[start : start + 200]).astype(np.uint8)

    write_image_bands(source, (size, size, 3), np.uint8, bands())
    write_image(small, pattern(y[:64])[:, :64].astype(np.uint8))
    base = _cli_peak_mib("upscale", str(small), "--backend", "cpu", "-q")
    peak = _cli_peak_mib("upscale", str(source), "--backend", "cpu", "-q")

    up = Upscaler(2, backend="cpu")
    out_pixels = (2 * size) ** 2
    untiled_mib = out_pixels * infer.WORK_BYTES_PER_OUTPUT_PIXEL / 2**20
    print(
        f"peak RSS {peak:.0f} MiB, small image {base:.0f} MiB, untiled need {untiled_mib:.0f} MiB"
    )
    assert peak - base < untiled_mib / 4, (peak, base, untiled_mib)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infer, "available_memory", lambda: FREE_MEMORY)
        tile = up.tile_size(np.empty((size, size, 3), np.uint8))
    assert 0 < tile < size // 3, f"tile {tile}: the default tiling must cut it into bands"
    out = read_image(tmp_path / "huge_x2.png")
    image = pattern(y).astype(np.uint8)
    seam, margin = tile, up.halo + 8
    for top, left in ((seam - 16, seam - 16), (size - 40, size - 40)):
        lo_y, lo_x = max(top - margin, 0), max(left - margin, 0)
        crop = image[lo_y : min(top + 40 + margin, size), lo_x : min(left + 40 + margin, size)]
        expected = up(crop, tile=0)[2 * (top - lo_y) :, 2 * (left - lo_x) :][:80, :80]
        got = out[2 * top : 2 * top + 80, 2 * left : 2 * left + 80]
        differ = got != expected
        assert not differ.any(), f"at ({top}, {left}): {int(differ.sum())} values differ"
