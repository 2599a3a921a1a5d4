"""The first README command as a user types it: `srcnn-fast upscale` at a terminal, in an
environment that holds only the core dependencies (no extra: no TensorFlow, Ray, CuPy, test
tools). A progress bar or any other terminal-only path that imports an extra's package fails
here, as it would after `pip install .`.

Building a fresh venv would take minutes and the network, so the test runs the CLI in this
interpreter with every installed top-level module that no core dependency provides made
unimportable, the core set read from the installed package's own metadata (its requirements
without an ``extra`` marker, closed over their own requirements)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO, SAMPLES

# Runs in the child: hides every module of a distribution outside the core closure, then
# calls the console script's entry point.
LAUNCHER = textwrap.dedent(
    """
    import os, re, sys
    from importlib import metadata

    def core_closure(roots):
        seen, todo = {"srcnn-fast"}, list(roots)
        while todo:
            name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
            if name in seen:
                continue
            seen.add(name)
            try:
                requirements = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            for requirement in requirements:
                requirement, _, marker = requirement.partition(";")
                if "extra" in marker:
                    continue
                todo.append(re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0))
        return seen

    # The roots are pyproject.toml's own list (passed by the test), not the installed
    # metadata, which a stale editable install could leave behind.
    core = core_closure(os.environ["SRCNN_CORE_DEPENDENCIES"].split())
    hidden = {
        module
        for module, dists in metadata.packages_distributions().items()
        if not any(re.sub(r"[-_.]+", "-", d).lower() in core for d in dists)
        and module not in ("srcnn_fast", "_distutils_hack")
    }

    class HideExtras:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in hidden:
                raise ModuleNotFoundError(f"No module named {name!r} (not a core dependency)")
            return None

    sys.meta_path.insert(0, HideExtras())
    from srcnn_fast.cli import main
    sys.argv[0] = "srcnn-fast"
    sys.exit(main())
    """
)


def core_dependencies() -> str:
    """The names in pyproject.toml's ``[project] dependencies``, space-separated."""
    import re

    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return " ".join(re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in project["dependencies"])


def run_in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; (exit code, output)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_upscale_in_a_terminal_with_core_dependencies_only(tmp_path: Path) -> None:
    out = tmp_path / "butterfly_x2.png"
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    env["SRCNN_CORE_DEPENDENCIES"] = core_dependencies()
    code, output = run_in_terminal(
        [sys.executable, "-c", LAUNCHER, "upscale", str(SAMPLES / "butterfly.png"), "-o", str(out)],
        env,
    )
    assert code == 0 and "Traceback" not in output, output
    assert out.stat().st_size > 0, output
    assert "1 upscaled" in output, output


def test_the_launcher_hides_extras() -> None:
    """The hiding is real: an extra's package (pytest itself, from `dev`) cannot be imported."""
    probe = LAUNCHER.replace("from srcnn_fast.cli import main", "import pytest")
    env = {**os.environ, "SRCNN_CORE_DEPENDENCIES": core_dependencies()}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=env,
    )
    assert result.returncode != 0 and "not a core dependency" in result.stderr, result.stderr
