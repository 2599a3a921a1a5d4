"""srcnn-fast on a Ray cluster (:mod:`srcnn_fast.distributed`): a head node and a worker node
on this machine, each with one CPU; every output is compared byte for byte with what the
local CLI writes for the same file, and failures, skips and refusals with the CLI's too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "ray.data", reason="needs the ray extra: pip install 'srcnn-fast[ray]' (Ray Data, pyarrow)"
)

import ray

from srcnn_fast import distributed
from srcnn_fast.cli import main
from srcnn_fast.distributed import plan_workers, run_distributed
from srcnn_fast.errors import BackendError, ImageError, SrcnnError
from srcnn_fast.imagefile import write_image

# Ray 2.60's DataContext() warns about its own deprecated fields as it builds itself.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

# (shape, dtype, extension): every layout the CLI handles, in PNG and a few lossy files.
LAYOUTS = [
    ((24, 32, 3), np.uint8, ".png"),
    ((24, 32), np.uint8, ".png"),
    ((24, 32, 4), np.uint8, ".png"),
    ((20, 28, 3), np.uint16, ".png"),
    ((24, 32, 2), np.uint8, ".png"),
    ((24, 32, 3), np.uint8, ".jpg"),
    ((24, 32), np.uint8, ".jpg"),
    ((16, 24, 4), np.uint8, ".webp"),
]
FOLDERS = ("", "trip", "trip/day2")
COUNT = 48


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real two-node Ray cluster (one process tree per node) for the whole module."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 small images in a three-level tree, one corrupt file, and an earlier output."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    for i in range(COUNT):
        shape, dtype, ext = LAYOUTS[i % len(LAYOUTS)]
        path = root / FOLDERS[i % len(FOLDERS)] / f"img{i:02d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype))
    (root / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    # A folder's own earlier output is never taken as an input.
    write_image(root / "img00_x2.png", np.zeros((48, 64, 3), np.uint8))
    return root


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temporaries included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Run the local CLI: (exit code, its error messages, its summary's counts)."""
    capsys.readouterr()
    code = main(["upscale", *argv, "--backend", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line.removeprefix("srcnn-fast: error: ") for line in lines if "error: " in line]
    return code, errors, counts(lines[-1].removeprefix("srcnn-fast: "))


def counts(summary_line: str) -> str:
    """'48 upscaled, 1 failed' from a summary line: its timing differs from run to run."""
    return re.sub(r" in [\d.]+ s.*", "", summary_line)


def run(*args, **kwargs) -> distributed.DistributedSummary:
    kwargs.setdefault("backend", "cpu")
    return run_distributed(*args, progress=False, report=lambda message: None, **kwargs)


def test_cluster_writes_the_local_cli_bytes_and_reports_the_corrupt_file(
    cluster: str, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    code, cli_errors, cli_counts = cli(
        capsys, str(photos), "-r", "-o", str(local), "-w", str(tiny_weights)
    )
    assert code == 1 and len(tree(local)) == COUNT

    done: list[tuple[str, str]] = []
    result = run(
        [str(photos)],
        str(remote),
        weights=tiny_weights,
        recursive=True,
        address=cluster,
        on_done=lambda source, target: done.append((source, target)),
    )

    assert tree(remote) == tree(local), "every output is the local CLI's, byte for byte"
    summary = result.summary
    assert (summary.done, summary.skipped, summary.failed) == (COUNT, 0, 1)
    assert summary.errors == cli_errors
    assert summary.errors[0].startswith(f"{photos / 'trip' / 'broken.png'}: not an image")
    assert counts(summary.line()) == cli_counts
    # Two one-CPU actors on two one-CPU nodes: one worked on each node.
    assert (result.workers, result.worker_kind, result.backends) == (2, "CPU", ["cpu"])
    assert result.output_pixels == sum(
        int(np.prod(LAYOUTS[i % len(LAYOUTS)][0][:2])) * 4 for i in range(COUNT)
    )
    assert result.images_per_second > 0 and "images/s" in result.line()
    assert (str(photos / "trip" / "img01.png"), str(remote / "trip" / "img01_x2.png")) in done


def test_upscale_ray_on_the_command_line_is_the_local_cli_on_a_cluster(
    cluster: str, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    base = [str(photos), "-r", "-w", str(tiny_weights)]
    expected = cli(capsys, *base, "-o", str(local))
    assert expected[0] == 1 and len(expected[1]) == 1  # trip/broken.png

    assert cli(capsys, *base, "-o", str(remote), "--ray", cluster) == expected
    assert tree(remote) == tree(local), "every output is the local CLI's, byte for byte"

    # -q: the corrupt file's one line and the summary, with throughput; nothing from Ray.
    capsys.readouterr()
    argv = ["upscale", *base, "-o", str(remote), "--ray", cluster, "--skip-existing", "-q"]
    assert main([*argv, "--backend", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == f"srcnn-fast: error: {expected[1][0]}"
    assert re.fullmatch(
        rf"srcnn-fast: 0 upscaled, {COUNT} skipped \(output exists\), 1 failed in [\d.]+ s: "
        r"[\d.]+ images/s, [\d.]+ output Mpx/s on 1 CPU worker \(cpu backend\)",
        err.splitlines()[1],
    ), err
    assert len(err.splitlines()) == 2, err


def test_upscale_ray_usage_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    base = ["upscale", "-w", str(tiny_weights), "--backend", "cpu"]
    # `--ray` takes an optional ADDRESS: an input right after it is not taken for one.
    with pytest.raises(SystemExit) as usage:
        main([*base, "--ray", str(photos)])
    assert usage.value.code == 2
    assert f"--ray: not a Ray address: '{photos}'" in capsys.readouterr().err

    assert main([*base, str(photos), "--ray-workers", "2"]) == 2
    assert capsys.readouterr().err == "srcnn-fast: error: --ray-workers needs --ray\n"

    # Refused as the local CLI refuses it, before joining any cluster.
    existing = tmp_path / "one.png"
    existing.write_bytes(b"a file")
    two = [str(photos / "img00.png"), str(photos / "img03.png")]
    assert main([*base, *two, "-o", str(existing), "--ray", "-q"]) == 2
    assert capsys.readouterr().err == (
        f"srcnn-fast: error: {existing}: several inputs need -o to name a folder, "
        "and this is a file\n"
    )

    monkeypatch.setitem(sys.modules, "ray.data", None)  # as if the ray extra were missing
    assert main([*base, str(photos), "--ray"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "needs the ray extra: pip install 'srcnn-fast[ray]'" in err[0]


def test_an_unwritable_output_folder_is_refused_before_any_worker_starts(
    monkeypatch: pytest.MonkeyPatch, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    """As locally: a folder that refuses new files (as a read-only mount answers) is found
    on the driver, each output named as asked, and no cluster is joined for nothing."""
    import errno
    import tempfile

    from srcnn_fast import distributed

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was joined for outputs that cannot be written")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(distributed, "_run_on_ray", no_cluster)
    out = tmp_path / "out"
    argv = ["upscale", str(photos / "img03.png"), "-o", f"{out}/", "-w", str(tiny_weights)]
    assert main([*argv, "--ray", "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"srcnn-fast: error: {out}/img03_x2.png: cannot write the output "
        f"({tmp_path}: Read-only file system)"
    ), lines


def test_an_address_that_is_no_address_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, photos: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # this module's Ray aside
    with pytest.raises(SrcnnError, match=r"^cannot join the Ray cluster at nohost \(Invalid"):
        run([str(photos / "trip")], str(tmp_path / "out"), weights=tiny_weights, address="nohost")


def test_uris_globs_and_several_inputs_are_named_as_the_cli_names_them(
    cluster: str, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    inputs = [str(photos / "**" / "img1[0-5]*"), str(photos / "trip")]
    code, cli_errors, cli_counts = cli(capsys, *inputs, "-o", str(local), "-w", str(tiny_weights))
    assert code == 1 and len(cli_errors) == 1  # trip/broken.png

    # The glob through pyarrow (a file:// URI), the folder as a plain path, -o as a URI.
    uri_inputs = ["file://" + inputs[0], inputs[1]]
    result = run(uri_inputs, f"file://{remote}", weights=tiny_weights, address=cluster)

    assert tree(remote) == tree(local)
    assert counts(result.summary.line()) == cli_counts
    assert result.summary.errors == cli_errors


def test_uri_inputs_and_outputs_are_planned_as_the_cli_plans_paths(
    photos: Path, tmp_path: Path
) -> None:
    """The driver's planning alone (no cluster): for every kind of input, URIs name the same
    files and outputs as the same local paths do in the CLI, -o folder or file included."""
    from srcnn_fast.jobs import collect_jobs

    # (local argument, the same as a URI: there ? starts the query, [...] replaces it)
    cases = [
        ("", "", True),
        ("", "", False),
        ("trip/day2", "trip/day2", False),
        ("*.png", "*.png", False),
        ("**/*.jpg", "**/*.jpg", False),
        ("**", "**", False),
        ("trip/*/img?[0-9].png", "trip/*/img[0-9][0-9].png", False),
        ("*/img4*", "*/img4*", False),
        ("nothing*", "nothing*", False),
        ("missing", "missing", False),
        ("trip/img01.png", "trip/img01.png", False),  # -o not a folder: the output file
    ]
    new_folder = tmp_path / "new"  # no such folder yet: the output file of a single file
    for arg, uri_arg, recursive in cases:
        local, uri = str(photos / arg), "file://" + str(photos / uri_arg)
        for out in (f"{tmp_path}/", str(new_folder), None):
            jobs, problems = collect_jobs([local], 2, out, recursive)
            expected = [(str(job.source), str(job.target)) for job in jobs]
            forms = [(uri, out)] + ([(local, f"file://{out}")] if out is not None else [])
            for planned_in, planned_out in forms:
                pairs, found = distributed._plan(
                    [planned_in], 2, planned_out, recursive, distributed._Filesystems()
                )
                where = (arg, planned_in, planned_out)
                assert [(s.path, t.path) for s, t in pairs] == expected, where
                assert [p.replace(uri, local) for p in found] == problems, where


def test_skip_existing_and_no_overwrite_behave_as_in_the_cli(
    cluster: str, photos: Path, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    folder = photos / "trip" / "day2"
    local, remote = tmp_path / "local", tmp_path / "ray"
    for out in (local, remote):
        out.mkdir()
        (out / "img02_x2.png").write_bytes(b"keep me")
        (out / "img05_x2.jpg").write_bytes(b"keep me too")
    base = [str(folder), "-w", str(tiny_weights)]

    for flags, options in [
        ([], {}),  # existing outputs fail, the others are written
        (["--skip-existing"], {"skip_existing": True}),  # now every output exists
        (["--overwrite"], {"overwrite": True}),
    ]:
        code, cli_errors, cli_counts = cli(capsys, *base, "-o", str(local), *flags)
        result = run([str(folder)], str(remote), weights=tiny_weights, address=cluster, **options)
        expected = [str(e).replace(str(local), str(remote)) for e in cli_errors]
        assert result.summary.errors == expected, flags
        assert counts(result.summary.line()) == cli_counts, flags
        assert tree(remote) == tree(local), flags
        assert (code == 0) == (result.summary.failed == 0)
    assert b"keep me" not in tree(remote).values(), "--overwrite replaced them"

    # Refused before any work, as the CLI refuses: an input as output, two inputs to one.
    source = folder / "img02.png"
    result = run([str(source)], str(source), weights=tiny_weights, overwrite=True, address=cluster)
    assert result.summary.errors == [f"{source}: refusing to overwrite an input image"]
    twice = run([str(source), str(source)], str(tmp_path / "twice"), weights=tiny_weights)
    assert twice.summary.errors == [
        f"{tmp_path / 'twice' / 'img02_x2.png'}: another input of this run already writes it"
    ]
    assert (twice.summary.done, twice.summary.failed) == (1, 1)


def test_a_worker_that_cannot_start_fails_the_job_with_its_one_line_error(
    cluster: str, photos: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match=r"^alpha must be one of bicubic, network, not 'x'$"):
        run([str(photos / "trip")], str(tmp_path / "out"), weights=tiny_weights, alpha="x")
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == {}


@pytest.fixture()
def crash_once(cluster: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Join the cluster as a new Ray job whose worker processes die, once, at the worst
    moment: a complete temporary file written, truncated to a partial one, not renamed."""
    marker, victim = str(tmp_path / "killed"), "img10_x2.png"

    def install() -> None:  # runs in every worker process of the job, as it starts
        import os

        from srcnn_fast import distributed

        commit = distributed._commit

        def crash_before_the_rename(fs, temporary: str, path: str) -> None:
            if path.endswith("/" + victim):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:  # the retry: this time the rename happens
                    pass
                else:
                    os.truncate(temporary, 10)
                    os._exit(1)
            commit(fs, temporary, path)

        distributed._commit = crash_before_the_rename

    ray.shutdown()
    ray.init(address=cluster, runtime_env={"worker_process_setup_hook": install})
    yield Path(marker), victim
    ray.shutdown()
    ray.init(address=cluster)


def test_a_worker_killed_mid_run_is_retried_and_leaves_no_partial_file(
    cluster: str,
    crash_once: tuple[Path, str],
    photos: Path,
    tiny_weights: Path,
    tmp_path: Path,
    capsys,
) -> None:
    marker, victim = crash_once
    local, remote = tmp_path / "local", tmp_path / "ray"
    cli(capsys, str(photos), "-r", "-o", str(local), "-w", str(tiny_weights))

    result = run([str(photos)], str(remote), weights=tiny_weights, recursive=True, address=cluster)

    assert marker.exists(), "a worker died writing " + victim
    assert (result.summary.done, result.summary.failed) == (COUNT, 1)
    assert tree(remote) == tree(local), "complete and correct, and no temporary file left"


def test_importing_the_module_imports_neither_ray_nor_pyarrow() -> None:
    code = (
        "import sys, srcnn_fast.distributed; "
        "print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


def test_without_the_ray_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, photos: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray.data", None)  # as if not installed
    with pytest.raises(BackendError, match=r"needs the ray extra: pip install 'srcnn-fast\[ray\]'"):
        run_distributed([str(photos)], None)


def test_pool_is_one_actor_per_gpu_where_there_are_gpus_else_per_cpu() -> None:
    gpu_cluster = {"CPU": 64.0, "GPU": 4.0}
    assert plan_workers(gpu_cluster) == (4, {"num_gpus": 1, "num_cpus": 1})
    assert plan_workers(gpu_cluster, "cuda", num_workers=2) == (2, {"num_gpus": 1, "num_cpus": 1})
    assert plan_workers(gpu_cluster, "cpu") == (64, {"num_cpus": 1}), "a CPU backend: CPU actors"
    assert plan_workers({"CPU": 2.0}) == (2, {"num_cpus": 1})
    assert plan_workers({"CPU": 64.0}, cpus_per_worker=8) == (8, {"num_cpus": 8})
    assert plan_workers({"CPU": 2.0}, num_workers=1) == (1, {"num_cpus": 1})
