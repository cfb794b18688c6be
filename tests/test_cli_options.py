"""The command line as a user meets it: a fast parser, shared validators whose errors name
the flag, OSErrors on user paths as ``error:`` lines with exit status 2 (never a
traceback), ``--device``, ``--quiet``, figure formats and the raw numbers saved beside the
figures."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from synthetic import write_mnist

from pullback_geom._core.progress import QUIET_ENV, progress_bar
from pullback_geom.cli import main, options
from pullback_geom.surfaces import sphere_distance


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code: int, err: str, *named: str) -> None:
    """Exit status 2, an ``error:`` line naming each of ``named``, no traceback."""
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err
    for text in named:
        assert text in err, (text, err)


# ---------------------------------------------------------------------- the parser
def test_the_choices_spelled_out_in_the_cli_mirror_the_registries():
    from pullback_geom import vae
    from pullback_geom.data.datasets import DATASET_NAMES, ENV_VAR
    from pullback_geom.experiments.compare import COMPARE_METHODS
    from pullback_geom.experiments.identifiability.experiment import METRICS
    from pullback_geom.geodesics import BOUNDARY_VALUE

    assert options.BUNDLED_NAMES == tuple(vae.BUNDLED)
    # The method names are no copies: lazy views of the registries, in registry order.
    assert isinstance(options.COMPARE_METHOD_CHOICES, options.RegistryNames)
    assert list(options.COMPARE_METHOD_CHOICES) == list(COMPARE_METHODS)
    assert "shooting" in options.COMPARE_METHOD_CHOICES
    assert "ode" not in options.COMPARE_METHOD_CHOICES
    energy = [
        name
        for name, solver in BOUNDARY_VALUE.items()
        if "init_curve" in solver.options and "n_points" in solver.options
    ]
    assert list(options.ENERGY_SOLVERS) == energy
    assert sorted(options.ENERGY_SOLVERS) == ["georce", "lbfgs", "lm", "newton-cg"]
    assert "shooting" not in options.ENERGY_SOLVERS
    assert not hasattr(options, "COMPARE_METHOD_NAMES")
    assert not hasattr(options, "ENERGY_SOLVER_NAMES")
    assert options.IDENTIFIABILITY_METRIC_NAMES == tuple(METRICS)
    assert options.DATASET_CHOICES == tuple(sorted(DATASET_NAMES))
    assert options.ACTIVATION_NAMES == tuple(vae.ACTIVATIONS)
    assert options.DATA_ENV_VAR == ENV_VAR


def test_building_the_parser_imports_no_torch():
    code = (
        "import sys\n"
        "from pullback_geom.cli import build_parser\n"
        "build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'matplotlib', 'geomstats') "
        "if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["report", "--help"]])
def test_help_imports_no_torch(argv):
    """--help of the commands whose choices are registries: the names load lazily."""
    code = (
        "import sys\n"
        "from pullback_geom.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as done:\n"
        "    assert done.code in (0, None), done.code\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'matplotlib', 'geomstats') "
        "if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_python_dash_m(capsys):
    from pullback_geom import __version__

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"pullback-geom {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "pullback_geom", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for command in ("demo", "report", "train", "compare", "distances", "identifiability"):
        assert command in done.stdout


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["compare", "--methods", ""], "argument --methods: needs at least one value"),
        (["compare", "--methods", "lm,nope"], "unknown 'nope'"),
        (["compare", "--methods", "lm,ode"], "unknown 'ode'; choose from lm,"),
        (["report", "--solver", "shooting"], "argument --solver: unknown 'shooting'; choose"),
        (["train", "--epochs", "0"], "argument --epochs: must be a positive integer; got 0"),
        (["demo", "--pairs", "0"], "argument --pairs: must be an integer >= 2; got 0"),
        (["demo", "--pairs", "two"], "argument --pairs: expected an integer; got 'two'"),
        (["demo", "--format", "png,jpg"], "argument --format: unknown 'jpg'"),
        (["train", "--lr", "nan"], "argument --lr: must be a finite number"),
        (["train", "--gate-quantile", "1"], "argument --gate-quantile: must lie strictly"),
        (["identifiability", "--seeds", "0,1"], "argument --seeds: needs at least 3 values"),
        (["identifiability", "--seeds", "0,1,1"], "argument --seeds: values must differ"),
        (["identifiability", "--metric", "mean,nope", "--seeds", "0,1,2"], "unknown 'nope'"),
        (["compare", "--device", "gpu"], "argument --device: expected cpu, cuda, cuda:N or auto"),
        (["compare", "--checkpoint", "no/such/model"], "argument --checkpoint: no checkpoint at"),
    ],
)
def test_argument_mistakes_are_refused_at_parse_time_with_the_flag(capsys, argv, named):
    code, out, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, named)
    assert out == ""  # refused before any banner


def test_identifiability_with_negative_pairs_prints_no_banner(capsys):
    code, out, err = run_cli(capsys, "identifiability", "--pairs", "-3", "--seeds", "0,1,2")
    assert_clean_error(code, err, "argument --pairs", "-3")
    assert out == ""


def test_identifiability_accepts_bundled_model_names(capsys, tmp_path):
    torch.set_num_threads(1)
    code, out, err = run_cli(
        capsys,
        "identifiability",
        "--checkpoints", "bernoulli,smooth,gaussian",
        "--pairs", "3", "--nodes", "6", "--out", str(tmp_path / "o"), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "o" / "identifiability.json").is_file()


def test_a_file_that_is_not_part_of_a_checkpoint_is_named(capsys, tmp_path):
    garbage = tmp_path / "some" / "garbage.pt"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "compare", "--checkpoint", str(garbage), "--out", str(tmp_path))
    assert_clean_error(code, err, f"{garbage} is not part of a checkpoint")


# ---------------------------------------------------------------------- user paths
def _unwritable(tmp_path):
    """A folder this process cannot create files in: a read-only folder, or for root (who
    may write anywhere a mode forbids) a path under /sys, which refuses even root."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    return "/sys/pullback-geom-test/out"


COMMANDS_WITH_OUT = {
    "compare": ["compare", "--pairs", "1", "--methods", "lm"],
    "report": ["report", "--checkpoint", "bernoulli"],
    "demo": ["demo"],
    "distances": ["distances", "--checkpoint", "bernoulli", "--points", "4"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_OUT))
def test_an_unwritable_out_is_an_error_naming_it(capsys, tmp_path, command):
    out = _unwritable(tmp_path)
    code, _, err = run_cli(capsys, *COMMANDS_WITH_OUT[command], "--out", str(out))
    assert_clean_error(code, err, "--out", str(out))


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_OUT))
def test_an_out_below_a_file_is_an_error_naming_it(capsys, tmp_path, command):
    afile = tmp_path / "some_file"
    afile.write_text("x")
    code, _, err = run_cli(capsys, *COMMANDS_WITH_OUT[command], "--out", str(afile / "sub"))
    assert_clean_error(code, err, "--out", f"{afile} is a file, not a folder")


def test_train_into_an_unwritable_out_or_from_unreadable_data(capsys, tmp_path, monkeypatch):
    data = write_mnist(tmp_path / "data", n_train=64, n_test=16)
    base = ["train", "--epochs", "1", "--data-dir", str(data), "--limit", "32"]
    out = _unwritable(tmp_path)
    code, _, err = run_cli(capsys, *base, "--out", str(out))
    assert_clean_error(code, err, "--out", str(out))
    # Unreadable image files: a PermissionError from the reader, reported with the path.
    raw = data / "MNIST" / "raw"
    if os.geteuid() != 0:
        for f in raw.iterdir():
            f.chmod(0o000)
    else:  # root reads any mode: make the open itself refuse, as it would for a user
        real_open = open

        def refusing_open(file, *args, **kwargs):
            if str(file).startswith(str(raw)):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing_open)
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "o"))
    assert_clean_error(code, err, str(raw), "Permission denied")


def test_a_missing_cuda_device_is_an_error_naming_the_flag(capsys, tmp_path):
    device = f"cuda:{torch.cuda.device_count()}"  # one past the last, or any without CUDA
    argv = ["compare", "--pairs", "1", "--methods", "lm", "--out", str(tmp_path), "--device"]
    code, _, err = run_cli(capsys, *argv, device)
    assert_clean_error(code, err, f"--device {device}")


# ---------------------------------------------------------------------- progress bars
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_draw_only_on_a_terminal_and_never_when_quiet(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    log = io.StringIO()  # a file or a pipe: no carriage-return frames
    for _ in progress_bar(range(3), file=log, desc="log"):
        pass
    assert log.getvalue() == ""
    terminal = _Terminal()
    for _ in progress_bar(range(3), file=terminal, desc="tty"):
        pass
    assert "tty" in terminal.getvalue()
    for show, quiet in ((False, None), (True, "1")):
        if quiet:
            monkeypatch.setenv(QUIET_ENV, quiet)
        terminal = _Terminal()
        for _ in progress_bar(range(3), show=show, file=terminal):
            pass
        assert terminal.getvalue() == ""


def test_quiet_sets_the_environment_for_workers(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    argv = ["compare", "--pairs", "1", "--methods", "lm", "--out", str(tmp_path), "--quiet"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert os.environ.get(QUIET_ENV) == "1"
    assert "compare:" not in err  # no bar over methods


# ---------------------------------------------------------------------- outputs
def test_compare_writes_every_format_and_its_numbers(capsys, tmp_path):
    argv = ["compare", "--surface", "sphere", "--pairs", "3", "--methods", "lm,discrete"]
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path), "--format", "png,pdf,svg")
    assert code == 0, err
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = (tmp_path / "compare.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert ET.parse(tmp_path / "compare.svg").getroot().tag.endswith("svg")
    with np.load(tmp_path / "compare.npz") as saved:
        p, q = torch.from_numpy(saved["p"]), torch.from_numpy(saved["q"])
        exact = sphere_distance(p, q).numpy()
        np.testing.assert_allclose(saved["exact"], exact, rtol=1e-12)
        # The saved lengths are the geodesics' (great circles on the sphere).
        np.testing.assert_allclose(saved["lm.length"], exact, rtol=1e-4)
        assert saved["lm.converged"].all()
        assert saved["discrete.curve"].shape[0] == 3


def test_the_same_figure_gives_the_same_bytes(tmp_path):
    from matplotlib.figure import Figure

    from pullback_geom.experiments.report.document import figure_bytes

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    for fmt in ("png", "pdf", "svg"):
        assert figure_bytes(fig, 80, fmt) == figure_bytes(fig, 80, fmt)
    with pytest.raises(ValueError, match="figure format 'jpg'"):
        figure_bytes(fig, 80, "jpg")
