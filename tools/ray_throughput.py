"""Throughput of `srcnn-fast upscale --ray` with 1 and 2 CPU workers vs the local CLI.

60 RGB PNGs of 256x256 (shifted copies of samples/butterfly.png, mirrored 2x2), shipped x2
weights, the cpu backend. Each configuration runs three times (alternating), into a fresh output
folder; the numbers are the CLI's own summary lines (images/s over the whole call) and the
command's wall time.

    python tools/ray_throughput.py      (with the ray extra installed; starts and stops a Ray)
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VENV = Path(sys.executable).parent  # the environment srcnn-fast and Ray are installed in
REPO = Path(__file__).resolve().parents[1]
CLI = str(VENV / "srcnn-fast")
RAY = str(VENV / "ray")
COUNT, SIZE, REPEATS = 60, 256, 3


def make_inputs(folder: Path) -> None:
    from srcnn_fast.imagefile import read_image, write_image

    small = read_image(REPO / "samples" / "butterfly.png")  # 128x128
    mirrored = np.concatenate([small, small[:, ::-1]], axis=1)
    butterfly = np.concatenate([mirrored, mirrored[::-1]], axis=0)  # 256x256, no seams
    assert butterfly.shape[:2] == (SIZE, SIZE), butterfly.shape
    for i in range(COUNT):
        image = np.ascontiguousarray(np.roll(butterfly, (7 * i, 13 * i), axis=(0, 1)))
        flipped = np.ascontiguousarray(image[:, ::-1])
        write_image(folder / f"img{i:02d}.png", flipped if i % 2 else image)


def run(argv: list[str], out: Path, count: int = COUNT) -> tuple[float, str]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = [line for line in done.stderr.splitlines() if line.startswith("srcnn-fast: ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{argv} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    assert len(list(out.iterdir())) == count
    return wall, lines[-1].removeprefix("srcnn-fast: ")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="s9_ray_"))
    inputs, out = work / "in", work / "out"
    inputs.mkdir()
    make_inputs(inputs)
    env_note = f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    print(f"{COUNT} x {SIZE}x{SIZE} RGB PNGs in {inputs}; {env_note}", flush=True)

    # A cluster started once, as on a real one: its startup is not in the per-run numbers.
    # Ray 2.60's `ray start` turns token authentication on, and a driver given an explicit
    # address sends the token (~/.ray/auth_token) only with RAY_AUTH_MODE=token.
    os.environ["RAY_AUTH_MODE"] = "token"
    head = subprocess.run(
        [RAY, "start", "--head", "--num-cpus=2", "--include-dashboard=false", "--port=6399"],
        capture_output=True,
        text=True,
    )
    if head.returncode != 0:
        sys.exit(head.stderr)
    address = "127.0.0.1:6399"
    local = [CLI, "upscale", str(inputs), "-o", str(out), "--backend", "cpu"]
    configs = {
        "local CLI": local,
        "--ray, 1 worker": [*local, "--ray", address, "--ray-workers", "1"],
        "--ray, 2 workers": [*local, "--ray", address, "--ray-workers", "2"],
    }
    results: dict[str, list[tuple[float, str]]] = {name: [] for name in configs}
    try:
        run(local, out)  # warm the disk cache and Numba's on-disk cache: not counted
        for repeat in range(REPEATS):
            for name, argv in configs.items():
                wall, line = run(argv, out)
                results[name].append((wall, line))
                print(f"[{repeat}] {name:17s} wall {wall:5.1f} s | {line}", flush=True)
        # What a run costs before its first image on a running cluster (worker processes
        # start, import srcnn_fast, build the Upscaler): one image, one worker.
        one = [CLI, "upscale", str(inputs / "img00.png"), "-o", f"{out}/", "--backend", "cpu"]
        for repeat in range(2):
            wall, line = run([*one, "--ray", address, "--ray-workers", "1"], out, count=1)
            print(f"[{repeat}] 1 image, 1 worker  wall {wall:5.1f} s | {line}", flush=True)
            wall, line = run(one, out, count=1)
            print(f"[{repeat}] 1 image, local CLI wall {wall:5.1f} s | {line}", flush=True)
        # Ray's own startup: the same run with `--ray` alone, which starts (and stops) a
        # local Ray of its own when RAY_ADDRESS is unset and no cluster runs here.
        subprocess.run([RAY, "stop"], capture_output=True)
        own = [*local, "--ray", "--ray-workers", "2"]
        wall, line = run(own, out)
        print(f"[own Ray] --ray (auto), 2 workers wall {wall:5.1f} s | {line}", flush=True)
    finally:
        subprocess.run([RAY, "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print("\nmedians:")
    for name, runs in results.items():
        seconds = [float(re.search(r" in ([\d.]+) s", line).group(1)) for _, line in runs]
        rates = [COUNT / s for s in seconds]
        mpx = [COUNT * (2 * SIZE) ** 2 / s / 1e6 for s in seconds]
        walls = [wall for wall, _ in runs]
        print(
            f"  {name:17s} {statistics.median(rates):5.2f} images/s, "
            f"{statistics.median(mpx):5.2f} output Mpx/s, "
            f"summary {statistics.median(seconds):5.1f} s, wall {statistics.median(walls):5.1f} s"
        )


if __name__ == "__main__":
    main()
