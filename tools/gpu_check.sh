#!/usr/bin/env bash
# Proves the CUDA path in one call, for whoever has an NVIDIA GPU for a few minutes: the GPU
# tests, compute-sanitizer on every kernel, and the GPU benchmark against cuDNN, each step capped
# so that the whole fits in the budget, into one report file. Run with --help for the details.
#
# The report (REPORT_DIR/gpu_check_<UTC time>.md; tests/test_gpu_check.py holds it to this):
#   # srcnn-fast GPU check
#   - date / GPU / driver / commit / host / python / result: one "- key: value" line each
#   ## Steps            a table "| step | status | seconds |", one row per step
#   ## Benchmark ratios the bench's speed summary, or "none: <why>"
#   ## Output           per step "### <step>: <status> (<n> s)", its command and output tail
# A status is PASS, FAIL (...), TIMEOUT (...), NOT RUN (<why>) or SKIPPED (<why>); only PASS
# and SKIPPED (a step left out on purpose, e.g. install with --no-install) count as passed.
set -uo pipefail # no -e: a failed step is recorded and the next one runs

usage() {
	cat <<'EOF'
usage: tools/gpu_check.sh [--no-install] [--venv DIR] [--python PY] [--budget SECONDS] REPORT_DIR

Proves the CUDA path of srcnn-fast on this machine's NVIDIA GPU in one call:
  install       pip install -e '.[cuda12,dev]' torch nvidia-cuda-sanitizer-api-cu12 into the
                virtual environment (created if missing); needs a package registry
  versions      CuPy, CUDA runtime, PyTorch, cuDNN and compute capability
  pytest-cuda   pytest -m cuda: the GPU tests (a skipped test fails the step)
  sample        a 53x37 RGBA crop of samples/butterfly.png (partial tiles, alpha)
  memcheck-fp32, racecheck-fp32, memcheck-fp16, racecheck-fp16
                compute-sanitizer on `srcnn-fast upscale --backend cuda` of the sample: fp32
                runs srcnn_fused_f32, fp16 srcnn_fused_tc, both srcnn_unpack and srcnn_pack
  bench-gpu     pytest bench -m cuda: 3840x2160 output, ours against cuDNN NCHW and NHWC,
                in fp32 (TF32 for cuDNN) and fp16 (a skipped case fails the step)
It writes REPORT_DIR/gpu_check_<UTC time>.md: GPU name and driver, each step's status, time
and output tail, and the benchmark ratios ('vs best peer' = best cuDNN median / this median).

options:
  --venv DIR        the environment to install into and run from (default: <repo>/.venv)
  --no-install      use the environment as it is: for a machine with no package registry
                    (e.g. no internet) where DIR already has the packages above
  --python PY       run with this interpreter as it is (implies --no-install)
  --budget SECONDS  time for the whole run (default 460, under 8 minutes): each step runs under
                    `timeout` with at most what is left, later steps are not run
  -h, --help        this text

A step that fails is recorded and the next one runs.
Exit status: 0 every step passed, 1 a step did not pass, 2 usage error,
3 no NVIDIA GPU found (the report says so).
EOF
}

usage_error() {
	printf 'gpu_check.sh: %s\n\n' "$1" >&2
	usage >&2
	exit 2
}

# An absolute path that keeps symlinks (a venv's bin/python is one, and must stay one).
absolute() {
	if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
INSTALL=1
PY=
BUDGET=460
REPORT_DIR=
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--no-install) INSTALL=0 ;;
	--venv)
		(($# >= 2)) || usage_error "--venv needs a directory"
		VENV=$(absolute "$2")
		shift
		;;
	--python)
		(($# >= 2)) || usage_error "--python needs an interpreter"
		PY=$2
		INSTALL=0
		shift
		;;
	--budget)
		[[ ${2-} =~ ^[1-9][0-9]*$ ]] || usage_error "--budget needs a whole number of seconds"
		BUDGET=$2
		shift
		;;
	-*) usage_error "unknown option $1" ;;
	*)
		[[ -z $REPORT_DIR ]] || usage_error "one REPORT_DIR only (got '$REPORT_DIR' and '$1')"
		REPORT_DIR=$(absolute "$1")
		;;
	esac
	shift
done
[[ -n $REPORT_DIR ]] || usage_error "missing REPORT_DIR"
if [[ -z $PY ]]; then
	PY=$VENV/bin/python
elif [[ $PY != */* ]]; then
	found=$(command -v -- "$PY") || usage_error "--python: '$PY' is not on PATH"
	PY=$found
else
	PY=$(absolute "$PY")
fi
if ((!INSTALL)) && [[ ! -x $PY ]]; then
	usage_error "no Python at $PY (without --no-install the script creates $VENV)"
fi
mkdir -p -- "$REPORT_DIR" || usage_error "cannot create REPORT_DIR $REPORT_DIR"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
REPORT=$REPORT_DIR/gpu_check_$(date -u -d "@$START" +%Y%m%dT%H%M%SZ).md
TMP=$(mktemp -d)
trap 'rm -rf -- "$TMP"' EXIT
cd "$REPO" || exit 2

# ---- steps: each one's name, status, seconds and command; its output is $TMP/<name>.log ------
NAMES=() STATUS=() SECS=() CMDS=()
QUIET=0 # 1: record without printing progress

record() { # NAME STATUS SECONDS COMMAND
	NAMES+=("$1") STATUS+=("$2") SECS+=("$3") CMDS+=("$4")
	((QUIET)) || printf '[%4d s] %s: %s\n' "$(($(date +%s) - START))" "$1" "$2"
}

passed() { [[ $1 == PASS || $1 == SKIPPED* ]]; }

quote() { # the words as one shell command line, quoted only where needed
	local line
	printf -v line '%q ' "$@"
	printf '%s' "${line% }"
}

# Ctrl-C or a kill ends the running step too (`timeout` runs it in a process group of its own,
# out of reach of the terminal's signals).
STEP_PID=
interrupted() {
	[[ -z $STEP_PID ]] || kill -TERM "$STEP_PID" 2>/dev/null
	echo "gpu_check.sh: interrupted, no report written" >&2
	exit 130
}
trap interrupted INT TERM

# run_step [--no-skips] NAME CAP COMMAND...: COMMAND under `timeout`, for at most CAP seconds and
# at most what is left of the budget. Succeeds if the step passed. --no-skips: a pytest run whose
# tests were skipped has not proven anything, so it fails.
run_step() {
	local no_skips=0 name cap left start rc status seconds
	[[ $1 != --no-skips ]] || {
		no_skips=1
		shift
	}
	name=$1 cap=$2
	shift 2
	left=$((DEADLINE - $(date +%s)))
	if ((left < 1)); then
		record "$name" "NOT RUN (out of time)" 0 "$(quote "$@")"
		return 1
	fi
	((cap <= left)) || cap=$left
	start=$(date +%s)
	timeout --kill-after=5 "$cap" "$@" >"$TMP/$name.log" 2>&1 </dev/null &
	STEP_PID=$!
	wait "$STEP_PID"
	rc=$?
	STEP_PID=
	seconds=$(($(date +%s) - start))
	if ((rc == 0)); then
		status=PASS
		if ((no_skips)) && tail -n 3 "$TMP/$name.log" | grep -Eq '[0-9]+ skipped'; then
			status="FAIL (tests skipped: see the reasons below)"
		fi
	elif ((rc == 124 || (rc == 137 && seconds >= cap))); then # 137: killed after --kill-after
		status="TIMEOUT (after $cap s)"
	else
		status="FAIL (exit $rc)"
	fi
	record "$name" "$status" "$seconds" "$(quote "$@")"
	[[ $status == PASS ]]
}

# compute-sanitizer from the nvidia-cuda-sanitizer-api-cu12 wheel, else from PATH (a toolkit).
find_sanitizer() {
	local path
	path=$("$PY" -c 'import importlib.util, pathlib
spec = importlib.util.find_spec("nvidia.cuda_sanitizer_api")
print(pathlib.Path(next(iter(spec.submodule_search_locations)), "bin", "compute-sanitizer"))' \
		2>/dev/null)
	if [[ -n $path && -x $path ]]; then printf '%s\n' "$path"; else command -v compute-sanitizer; fi
}

# The GPU(s) as nvidia-smi lists them ("name, driver" per line), or why there is none.
detect_gpu() {
	local out rc
	if ! command -v nvidia-smi >/dev/null; then
		echo "nvidia-smi is not on PATH: no NVIDIA driver installed"
		return 1
	fi
	out=$(timeout 30 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)
	rc=$?
	if ((rc != 0)); then
		echo "nvidia-smi failed (exit $rc): $(head -n 1 <<<"$out")"
		return 1
	fi
	[[ -n $out ]] || {
		echo "nvidia-smi lists no GPU"
		return 1
	}
	printf '%s\n' "$out"
}

# What the ratios depend on; a missing package is reported, not fatal (its step will fail).
VERSIONS='import importlib.metadata as meta
for name in ("srcnn-fast", "cupy-cuda12x", "torch", "nvidia-cuda-sanitizer-api-cu12"):
    try:
        print(name, meta.version(name))
    except meta.PackageNotFoundError:
        print(name, "not installed")
try:
    import cupy, torch
    print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "cuDNN", torch.backends.cudnn.version())
    print("compute capability", cupy.cuda.Device().compute_capability)
except Exception as exc:
    print(type(exc).__name__, exc)'
MAKE_SAMPLE='import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB").crop((0, 0, 53, 37))
image.putalpha(Image.linear_gradient("L").resize(image.size))
image.save(sys.argv[2])'
SUMMARY_START='^srcnn-fast speed summary'
SUMMARY_END='^(written to '

# shellcheck disable=SC2016 # the backticks are Markdown's
fenced() { printf '```text\n%s\n```\n' "$1"; }

# shellcheck disable=SC2016
write_report() {
	local i failed=0 total=${#NAMES[@]} result ratios commit
	for ((i = 0; i < total; i++)); do passed "${STATUS[i]}" || failed=$((failed + 1)); done
	if ((failed)); then result="FAIL ($failed of $total steps did not pass)"; else result=PASS; fi
	result+=" in $(($(date +%s) - START)) s (budget $BUDGET s)"
	commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
	[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || commit+=" with local changes"
	ratios=$(sed -n "/$SUMMARY_START/,/$SUMMARY_END/p" "$TMP/bench-gpu.log" 2>/dev/null)
	{
		echo "# srcnn-fast GPU check"
		echo
		echo "- date: $(date -u -d "@$START" +%Y-%m-%dT%H:%M:%SZ)"
		echo "- GPU: $GPU_NAME"
		echo "- driver: $DRIVER"
		echo "- commit: $commit"
		echo "- host: ${HOSTNAME:-unknown}"
		echo "- python: $PY"
		echo "- result: $result"
		echo
		echo "## Steps"
		echo
		echo "| step | status | seconds |"
		echo "|---|---|---|"
		for ((i = 0; i < total; i++)); do echo "| ${NAMES[i]} | ${STATUS[i]} | ${SECS[i]} |"; done
		echo
		echo "## Benchmark ratios"
		echo
		if [[ -n $ratios ]]; then
			fenced "$ratios"
		else
			echo "none: the bench-gpu step printed no speed summary"
		fi
		echo
		echo "## Output"
		for ((i = 0; i < total; i++)); do
			echo
			echo "### ${NAMES[i]}: ${STATUS[i]} (${SECS[i]} s)"
			echo
			[[ -z ${CMDS[i]} ]] || printf 'command: `%s`\n\n' "${CMDS[i]}"
			if [[ -s $TMP/${NAMES[i]}.log ]]; then
				fenced "$(tail -n 40 "$TMP/${NAMES[i]}.log")"
			else
				echo "(no output)"
			fi
		done
	} >"$REPORT"
	echo "report: $REPORT"
	((failed == 0))
}

# ---- the run ---------------------------------------------------------------------------------
STEPS=(install versions pytest-cuda sample memcheck-fp32 racecheck-fp32 memcheck-fp16
	racecheck-fp16 bench-gpu)

if ! detect_gpu >"$TMP/gpu.log"; then
	echo "no NVIDIA GPU found: $(cat "$TMP/gpu.log")" >&2
	GPU_NAME="none ($(cat "$TMP/gpu.log"))"
	DRIVER=none
	QUIET=1
	record gpu "FAIL (no NVIDIA GPU found)" 0 "nvidia-smi --query-gpu=name,driver_version"
	for step in "${STEPS[@]}"; do record "$step" "NOT RUN (no GPU)" 0 ""; done
	write_report
	exit 3
fi
GPU_NAME=$(cut -d, -f1 "$TMP/gpu.log" | paste -sd ';' | sed 's/;/; /g')
DRIVER=$(head -n 1 "$TMP/gpu.log" | cut -d, -f2 | tr -d ' ')
record gpu PASS 0 "nvidia-smi --query-gpu=name,driver_version"

if ((INSTALL)); then
	[[ -x $PY ]] || run_step venv 60 python3 -m venv "$VENV"
	run_step install 300 "$PY" -m pip install --progress-bar off -e ".[cuda12,dev]" torch \
		nvidia-cuda-sanitizer-api-cu12
else
	record install "SKIPPED (--no-install)" 0 ""
fi

# Caps after the install add up to 450 s, inside the default 460 s budget; the benchmark runs
# before the sanitizers so that a slow install cuts the sanitizer runs (last), not the ratios.
run_step versions 20 "$PY" -c "$VERSIONS"
run_step --no-skips pytest-cuda 110 "$PY" -m pytest -m cuda -p no:cacheprovider tests
run_step --no-skips bench-gpu 140 "$PY" -m pytest bench -m cuda -p no:cacheprovider

SAMPLE=$TMP/sample.png
run_step sample 20 "$PY" -c "$MAKE_SAMPLE" samples/butterfly.png "$SAMPLE"
SANITIZER=$(find_sanitizer)
NO_SANITIZER="FAIL (compute-sanitizer not found: pip install nvidia-cuda-sanitizer-api-cu12)"
for precision in fp32 fp16; do
	for tool in memcheck racecheck; do
		if [[ -z $SANITIZER ]]; then
			record "$tool-$precision" "$NO_SANITIZER" 0 ""
			continue
		fi
		run_step "$tool-$precision" 40 "$SANITIZER" --tool "$tool" --error-exitcode 1 \
			"$PY" -m srcnn_fast.cli upscale "$SAMPLE" -o "$TMP/$tool-$precision.png" \
			--backend cuda --precision "$precision"
	done
done

write_report || exit 1
