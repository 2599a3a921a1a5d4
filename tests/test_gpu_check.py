"""tools/gpu_check.sh without a GPU: argument handling, the path where the GPU is missing, and
the report format, the last with stand-ins for nvidia-smi, the interpreter and compute-sanitizer.

Every run gets a PATH of its own: links to the few host tools the script uses, plus the stand-ins
a test puts there, so a real nvidia-smi, compute-sanitizer or Python never takes part and nothing
is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "tools" / "gpu_check.sh"
HOST_TOOLS = [
    "bash",
    "env",
    "cat",
    "cp",  # (the stand-in python3)
    "cut",
    "date",
    "dirname",
    "git",
    "grep",
    "head",
    "mkdir",
    "mktemp",
    "paste",
    "rm",
    "sed",
    "sleep",
    "tail",
    "timeout",
    "tr",
]
STEPS = [
    "gpu",
    "install",
    "versions",
    "pytest-cuda",
    "bench-gpu",
    "sample",
    "memcheck-fp32",
    "racecheck-fp32",
    "memcheck-fp16",
    "racecheck-fp16",
]
HEADER_KEYS = ["date", "GPU", "driver", "commit", "host", "python", "result"]
H100 = "NVIDIA H100 80GB HBM3, 550.54.15"

SPEED_SUMMARY = """\
srcnn-fast speed summary: median ms; 'vs best peer' = best peer median / this median
group             impl              median ms  GFLOP/s   Mpix/s  vs best peer
-----------------------------------------------------------------------------
1920x1080 x2      cuda                    4.1  32456.2   2023.0  1.52x
1920x1080 x2      cudnn-nhwc              6.2  21466.9   1337.9  1.00x (cudnn-nhwc)
(written to /repo/.benchmarks/summary.json)"""

# The interpreter's stand-in: logs its arguments, answers the script's calls by them.
FAKE_PYTHON = f"""#!/bin/bash
echo "python $*" >>"$FAKE_LOG"
case "$1 $2 $3" in
"-m pytest -m")
    [[ -z ${{FAKE_CUDA_SLEEP-}} ]] || exec sleep "$FAKE_CUDA_SLEEP"
    echo "tests/test_cuda_gpu.py ......"
    echo "${{FAKE_CUDA_SUMMARY:-6 passed in 3.21s}}"
    exit "${{FAKE_CUDA_RC:-0}}" ;;
"-m pytest bench")
    echo "bench/test_speed.py ......"
    cat <<'EOF'
{SPEED_SUMMARY}
EOF
    echo "${{FAKE_BENCH_SUMMARY:-6 passed, 81 deselected in 40.00s}}" ;;
esac
"""
FAKE_SANITIZER = """#!/bin/bash
echo "compute-sanitizer $*" >>"$FAKE_LOG"
echo "========= COMPUTE-SANITIZER"
if [[ $2 == "${FAKE_SANITIZER_FAILS-}" ]]; then
    echo "========= ERROR SUMMARY: 1 error"
    exit 1
fi
echo "========= ERROR SUMMARY: 0 errors"
"""


def _stub(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path):
    """A bin folder of host tools, and a runner of the script with only that folder on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in HOST_TOOLS:
        if path := shutil.which(tool):  # the script copes without git
            (bin_dir / tool).symlink_to(path)

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            cwd=tmp_path,
            env={"PATH": str(bin_dir), "FAKE_LOG": str(tmp_path / "calls.log"), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    run.bin = bin_dir
    return run


@pytest.fixture
def gpu_machine(machine, tmp_path: Path):
    """The machine with an H100 as nvidia-smi lists it, a stand-in interpreter and sanitizer."""
    _stub(machine.bin / "nvidia-smi", f"#!/bin/bash\necho '{H100}'\n")
    _stub(machine.bin / "compute-sanitizer", FAKE_SANITIZER)
    _stub(tmp_path / "python", FAKE_PYTHON)
    return machine


def parse_report(directory: Path) -> tuple[dict[str, str], dict[str, str], str]:
    """(header fields, step -> status, benchmark ratios) of the one report in ``directory``,
    asserting the layout that tools/gpu_check.sh documents."""
    (path,) = directory.iterdir()
    assert re.fullmatch(r"gpu_check_\d{8}T\d{6}Z\.md", path.name)
    head, steps, ratios, output = re.split(
        r"^## (?:Steps|Benchmark ratios|Output)\n", path.read_text(), flags=re.M
    )
    lines = head.strip().splitlines()
    assert lines[0] == "# srcnn-fast GPU check" and lines[1] == ""
    fields = dict(re.fullmatch(r"- (\w+): (.+)", line).groups() for line in lines[2:])
    assert list(fields) == HEADER_KEYS
    table = steps.strip().splitlines()
    assert table[:2] == ["| step | status | seconds |", "|---|---|---|"]
    rows = [re.fullmatch(r"\| (\S+) \| (.+) \| (\d+) \|", row).groups() for row in table[2:]]
    statuses = {name: status for name, status, _ in rows}
    headings = re.findall(r"^### (\S+): (.+) \((\d+) s\)$", output, flags=re.M)
    assert headings == rows, "the output section follows the table"
    return fields, statuses, ratios.strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing REPORT_DIR"),
        (["--bogus", "out"], "unknown option --bogus"),
        (["--budget", "soon", "out"], "--budget needs a whole number of seconds"),
        (["out", "other"], "one REPORT_DIR only"),
        (["--venv", "nowhere", "--no-install", "out"], "no Python at"),
    ],
)
def test_usage_errors_exit_2_with_the_usage(machine, tmp_path, args, message) -> None:
    result = machine(*args)
    assert result.returncode == 2
    assert message in result.stderr and "usage: tools/gpu_check.sh" in result.stderr
    assert not (tmp_path / "out").exists()


def test_help(machine) -> None:
    result = machine("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: tools/gpu_check.sh")
    for word in ("--no-install", "--venv", "--python", "--budget", "Exit status"):
        assert word in result.stdout


def test_no_gpu_gives_one_clear_message_and_a_report(machine, tmp_path) -> None:
    result = machine("reports")
    assert result.returncode == 3
    assert (
        result.stderr
        == "no NVIDIA GPU found: nvidia-smi is not on PATH: no NVIDIA driver installed\n"
    )
    assert result.stdout.startswith("report: ") and result.stdout.count("\n") == 1
    fields, statuses, ratios = parse_report(tmp_path / "reports")
    assert fields["GPU"].startswith("none (nvidia-smi is not on PATH")
    assert fields["result"].startswith("FAIL (10 of 10 steps did not pass)")
    assert statuses == {"gpu": "FAIL (no NVIDIA GPU found)"} | {
        step: "NOT RUN (no GPU)" for step in STEPS[1:]
    }
    assert ratios.startswith("none:")
    assert not (tmp_path / "calls.log").exists(), "nothing ran, nothing was installed"


def test_a_failing_nvidia_smi_is_quoted(machine, tmp_path) -> None:
    failure = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    _stub(machine.bin / "nvidia-smi", f'#!/bin/bash\necho "{failure}"\nexit 9\n')
    result = machine("reports")
    assert result.returncode == 3
    assert result.stderr == f"no NVIDIA GPU found: nvidia-smi failed (exit 9): {failure}\n"
    parse_report(tmp_path / "reports")


def test_every_step_passes_on_a_working_gpu(gpu_machine, tmp_path) -> None:
    result = gpu_machine("--python", str(tmp_path / "python"), "reports")
    assert result.returncode == 0, result.stdout + result.stderr
    fields, statuses, ratios = parse_report(tmp_path / "reports")
    assert (fields["GPU"], fields["driver"]) == ("NVIDIA H100 80GB HBM3", "550.54.15")
    assert fields["python"] == str(tmp_path / "python")
    assert fields["result"].startswith("PASS in ")
    assert statuses == {step: "PASS" for step in STEPS} | {"install": "SKIPPED (--no-install)"}
    assert ratios == f"```text\n{SPEED_SUMMARY}\n```"
    calls = (tmp_path / "calls.log").read_text()
    assert "python -m pytest -m cuda -p no:cacheprovider tests" in calls
    assert "python -m pytest bench -m cuda -p no:cacheprovider" in calls
    for precision in ("fp32", "fp16"):  # srcnn_fused_f32 / srcnn_fused_tc, and the pixel kernels
        for tool in ("memcheck", "racecheck"):
            assert re.search(
                rf"compute-sanitizer --tool {tool} --error-exitcode 1 \S+python -m srcnn_fast.cli "
                rf"upscale \S+sample.png .*--backend cuda --precision {precision}",
                calls,
            ), tool + precision
    assert re.search(r"^\[ *\d+ s\] bench-gpu: PASS$", result.stdout, flags=re.M)


def test_the_default_creates_the_venv_and_installs(gpu_machine, tmp_path) -> None:
    # python3 -m venv DIR makes DIR/bin/python the stand-in, which then answers pip too.
    _stub(
        gpu_machine.bin / "python3",
        f'#!/bin/bash\necho "python3 $*" >>"$FAKE_LOG"\nmkdir -p "$3/bin"\n'
        f'cp {tmp_path / "python"} "$3/bin/python"\n',
    )
    result = gpu_machine("--venv", "env", "reports")
    assert result.returncode == 0, result.stdout + result.stderr
    _, statuses, _ = parse_report(tmp_path / "reports")
    assert list(statuses) == ["gpu", "venv", *STEPS[1:]]
    assert set(statuses.values()) == {"PASS"}
    calls = (tmp_path / "calls.log").read_text().splitlines()
    env = tmp_path / "env"
    assert calls[:2] == [
        f"python3 -m venv {env}",
        "python -m pip install --progress-bar off -e .[cuda12,dev] torch "
        "nvidia-cuda-sanitizer-api-cu12",
    ]


def test_failed_and_skipped_steps_are_recorded_and_the_rest_runs(gpu_machine, tmp_path) -> None:
    result = gpu_machine(
        "--python",
        str(tmp_path / "python"),
        "reports",
        FAKE_CUDA_RC="1",
        FAKE_CUDA_SUMMARY="1 failed, 5 passed in 3.00s",
        FAKE_SANITIZER_FAILS="racecheck",
        FAKE_BENCH_SUMMARY="5 passed, 1 skipped, 81 deselected in 40.00s",
    )
    assert result.returncode == 1
    fields, statuses, ratios = parse_report(tmp_path / "reports")
    assert fields["result"].startswith("FAIL (4 of 10 steps did not pass)")
    assert statuses["pytest-cuda"] == "FAIL (exit 1)"
    assert statuses["racecheck-fp32"] == statuses["racecheck-fp16"] == "FAIL (exit 1)"
    assert statuses["memcheck-fp32"] == statuses["memcheck-fp16"] == "PASS"
    assert statuses["bench-gpu"] == "FAIL (tests skipped: see the reasons below)"
    assert SPEED_SUMMARY in ratios
    report = next((tmp_path / "reports").iterdir()).read_text()
    assert "1 failed, 5 passed in 3.00s" in report and "ERROR SUMMARY: 1 error" in report


def test_steps_stop_at_the_budget(gpu_machine, tmp_path) -> None:
    start = time.monotonic()
    result = gpu_machine(
        "--python", str(tmp_path / "python"), "--budget", "3", "reports", FAKE_CUDA_SLEEP="30"
    )
    assert time.monotonic() - start < 15
    assert result.returncode == 1
    _, statuses, ratios = parse_report(tmp_path / "reports")
    assert re.fullmatch(r"TIMEOUT \(after [1-3] s\)", statuses["pytest-cuda"])
    assert {statuses[step] for step in STEPS[4:]} == {"NOT RUN (out of time)"}
    assert ratios.startswith("none:")


def test_a_missing_compute_sanitizer_fails_its_steps(gpu_machine, tmp_path) -> None:
    (gpu_machine.bin / "compute-sanitizer").unlink()
    result = gpu_machine("--python", str(tmp_path / "python"), "reports")
    assert result.returncode == 1
    _, statuses, _ = parse_report(tmp_path / "reports")
    for step in STEPS[6:10]:
        assert statuses[step].startswith("FAIL (compute-sanitizer not found: pip install ")
    assert statuses["bench-gpu"] == "PASS"


def test_the_caps_after_the_install_fit_the_default_budget() -> None:
    """Each step's cap, summed over the steps after the install (the sanitizer line runs four
    times), fits the default budget, so a run that installs quickly is never cut short."""
    import re

    text = SCRIPT.read_text()
    budget = int(re.search(r"^BUDGET=(\d+)", text, re.M).group(1))
    caps = {
        name: int(cap)
        for name, cap in re.findall(r"run_step (?:--no-skips )?(\S+) (\d+)", text)
        if name not in ("venv", "install")
    }
    total = sum(cap * (4 if "$tool" in name else 1) for name, cap in caps.items())
    assert total <= budget, (caps, total, budget)
