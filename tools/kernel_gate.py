"""The CUDA compile gate: every kernel, compiled by NVRTC exactly as the backend compiles it,
for sm_75, sm_80, sm_86, sm_89 and sm_90 -- no GPU needed. Reports registers, shared memory
and spills per kernel; a compile error or any spill fails.

    python tools/kernel_gate.py            # prints the table, exit 1 on failure

tests/test_cuda_compile_gate.py runs the same check in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from srcnn_fast.backends.cuda import compile_options, kernel_builds
from srcnn_fast.backends.cuda_tensorcore import MIN_COMPUTE_CAPABILITY, tensorcore_build
from srcnn_fast.model import SRCNNWeights

#: Architecture -> shared memory per block it allows (opt-in maximum), which sets the tile.
ARCHITECTURES = {
    "sm_75": 64 * 1024,
    "sm_80": 163 * 1024,
    "sm_86": 99 * 1024,
    "sm_89": 99 * 1024,
    "sm_90": 227 * 1024,
}
CACHE = Path(tempfile.gettempdir()) / "srcnn-fast-nvrtc-gate"


@dataclass
class KernelReport:
    arch: str
    source: str
    kernel: str
    registers: int
    spill_bytes: int
    static_shared: int
    stack: int


@dataclass
class BuildResult:
    arch: str
    source: str
    options: list[str]
    ok: bool
    log: str
    kernels: list[KernelReport]


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_log(log: str, arch: str, source: str) -> list[KernelReport]:
    """ptxas -v lines, per entry function."""
    reports, current = [], None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = KernelReport(arch, source, m.group(1), 0, 0, 0, 0)
            reports.append(current)
        elif current is not None and (m := _SPILL.search(line)):
            current.stack = int(m.group(1))
            current.spill_bytes = int(m.group(2)) + int(m.group(3))
        elif current is not None and (m := _USED.search(line)):
            current.registers = int(m.group(1))
            if s := _SMEM.search(line):
                current.static_shared = int(s.group(1))
    return reports


def compile_one(job: tuple[str, str, tuple[str, ...]]) -> BuildResult:
    """NVRTC-compile one source for one architecture (cached by content and versions)."""
    from cupy.cuda import nvrtc

    arch, source, options = job
    path = Path(source)
    full = [*compile_options(path, options), f"--gpu-architecture={arch}", "-Xptxas=-v"]
    headers = sorted(path.parent.glob("*.cuh"))
    texts = [path.read_text(), *(h.read_text() for h in headers), *full, str(nvrtc.getVersion())]
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:24]
    cached = CACHE / f"{path.stem}-{arch}-{key}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        data["kernels"] = [KernelReport(**k) for k in data["kernels"]]
        return BuildResult(**data)
    program = nvrtc.createProgram(
        path.read_text(),
        path.name,
        [h.read_bytes() for h in headers],
        [h.name.encode() for h in headers],
    )
    try:
        nvrtc.compileProgram(program, full)
        ok = True
    except nvrtc.NVRTCError:
        ok = False
    log = nvrtc.getProgramLog(program)
    nvrtc.destroyProgram(program)
    result = BuildResult(arch, path.name, full, ok, log, parse_log(log, arch, path.name))
    if ok:
        CACHE.mkdir(parents=True, exist_ok=True)
        payload = asdict(result)
        cached.write_text(json.dumps(payload))
    return result


def run_gate(weights: SRCNNWeights | None = None) -> list[BuildResult]:
    """Compile every (kernel file, options) the backend uses, for every architecture."""
    if weights is None:
        from srcnn_fast.infer import shipped_weights_path

        weights = SRCNNWeights.load(shipped_weights_path(2))
    jobs = [
        (arch, str(source), options)
        for arch, shared in ARCHITECTURES.items()
        for source, options in kernel_builds(weights, shared)
    ]
    # The tensor-core kernel (srcnn_fused_tc.cu) exists for sm_80+ only.
    jobs += [
        (arch, str(source), options)
        for arch, shared in ARCHITECTURES.items()
        if int(arch.removeprefix("sm_")) >= MIN_COMPUTE_CAPABILITY
        for source, options in [tensorcore_build(weights, shared)]
    ]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(compile_one, jobs))


def table(results: list[BuildResult]) -> str:
    lines = [f"{'arch':<7}{'kernel':<18}{'registers':>10}{'spills B':>10}{'static smem B':>15}"]
    for result in results:
        if not result.ok:
            lines.append(f"{result.arch:<7}{result.source}: COMPILE ERROR")
        for k in result.kernels:
            lines.append(
                f"{k.arch:<7}{k.kernel:<18}{k.registers:>10}{k.spill_bytes:>10}{k.static_shared:>15}"
            )
    return "\n".join(lines)


def main() -> int:
    results = run_gate()
    print(table(results))
    bad = [r for r in results if not r.ok or any(k.spill_bytes for k in r.kernels)]
    for r in bad:
        print(f"FAILED {r.arch} {r.source}:\n{r.log}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
