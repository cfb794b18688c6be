"""The package as installed: the core works without any optional library, each adapter
that needs one names the extra to install, and pyproject's extras fit together.

The optional libraries are hidden in a fresh interpreter (``sys.modules[name] = None``:
they and their submodules cannot be imported), so these tests run on a full ``.[dev]``
install; a core-only install behaves the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pullback_geom._core.extras import MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]

#: import names of the optional libraries (the extras' and what they pull, like pandas)
OPTIONAL = (
    "geomstats",
    "stochman",
    "torchdiffeq",
    "matplotlib",
    "torchvision",
    "sklearn",
    "pandas",
    "dask",
    "distributed",
    "zarr",
)

#: extra -> what the core lacks without it
EXTRAS = ("geomstats", "stochman", "viz", "data", "distributed")

HIDE = f"""
import sys

HIDDEN = {set(OPTIONAL)!r}
assert not HIDDEN & {{m.split(".")[0] for m in sys.modules}}, "already imported"
# None in sys.modules: ``import geomstats`` (and of any submodule) raises
# ModuleNotFoundError, and importlib.util.find_spec answers None, as for a library that is
# not installed. (A sys.meta_path finder that raises breaks torch, whose dynamo probes
# optional libraries with find_spec.)
for name in HIDDEN:
    sys.modules[name] = None


def fails_naming(extra, call):
    try:
        call()
    except ImportError as err:
        assert f"pip install 'pullback-geom[{{extra}}]'" in str(err), str(err)
        return str(err)
    raise AssertionError(f"{{call}} did not fail without the {{extra}} extra")
"""


def run_hidden(code: str, tmp_path: Path) -> str:
    """Run ``code`` after :data:`HIDE` in a fresh interpreter; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", HIDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: the installed package is what is imported
        env={k: v for k, v in os.environ.items() if k != "GEOMSTATS_BACKEND"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_core_works_without_the_optional_libraries(tmp_path):
    out = run_hidden(
        """
        import math
        import pullback_geom, pullback_geom.geodesics, pullback_geom.vae
        import torch
        from pullback_geom import PullbackMetric
        from pullback_geom.geodesics import connecting_geodesic, exp_map, pairwise_distances
        from pullback_geom.surfaces import InverseStereographic

        # a tiny decoder: G = J^T J against reverse-mode autograd
        decoder = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)
        ).double()
        z = torch.randn(3, 2, dtype=torch.float64)
        G = PullbackMetric(decoder).metric_tensor(z)
        J = torch.stack([torch.autograd.functional.jacobian(decoder, x) for x in z])
        torch.testing.assert_close(G, J.mT @ J)

        # the unit sphere: a quarter great circle, and curvature 1
        sphere = PullbackMetric(InverseStereographic(), latent_dim=2)
        p = torch.zeros(1, 2, dtype=torch.float64)
        q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        geo = connecting_geodesic(sphere, p, q)
        assert bool(geo.converged.all()), geo
        assert abs(float(geo.length[0]) - math.pi / 2) < 1e-3, float(geo.length[0])
        K = sphere.gaussian_curvature(torch.randn(4, 2, dtype=torch.float64))
        torch.testing.assert_close(K, torch.ones(4, dtype=torch.float64))
        assert exp_map(sphere, p, q).shape == (1, 2)
        D = pairwise_distances(sphere, torch.randn(3, 2, dtype=torch.float64))
        assert D.shape == (3, 3)

        # the bundled model, and the bundled images without torchvision
        from pullback_geom import vae
        from pullback_geom.data.datasets import load_test_images

        model = vae.load_default("bernoulli")
        codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes[:5]
        assert model.pullback_metric().metric_tensor(codes).shape == (5, 2, 2)
        images, source = load_test_images("mnist", data_dir="no-such-folder")
        assert images.images.shape == (2000, 28, 28), source

        print("core works")
        """,
        tmp_path,
    )
    assert out.strip().splitlines()[-1] == "core works"


def test_each_adapter_names_its_extra(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")
    out = run_hidden(
        f"""
        import importlib
        import torch

        print(fails_naming("geomstats", lambda: importlib.import_module("pullback_geom.geomstats")))
        print(fails_naming("stochman", lambda: importlib.import_module("pullback_geom.stochman")))
        # the reader of MNIST's files, not the module: it also holds the digit orbit
        from pullback_geom.data.datasets import load_dataset
        print(fails_naming("data", lambda: load_dataset("mnist", {str(tmp_path)!r}, train=False)))
        from pullback_geom.geodesics.cluster import local_cluster
        print(fails_naming("distributed", lambda: local_cluster(1)))
        print(fails_naming("viz", lambda: importlib.import_module("pullback_geom.viz")))
        # a command whose extra is missing: one error line naming it, exit status 2
        import contextlib, io
        from pullback_geom.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(["demo", "--out", "demo"])
        assert status == 2, err.getvalue()
        assert "pip install 'pullback-geom[viz]'" in err.getvalue(), err.getvalue()
        assert "Traceback" not in err.getvalue()
        """,
        tmp_path,
    )
    assert out.splitlines()[:2] == [
        "pullback_geom.geomstats needs geomstats: pip install 'pullback-geom[geomstats]'",
        "pullback_geom.stochman needs stochman: pip install 'pullback-geom[stochman]'",
    ]
    assert "reading MNIST needs torchvision" in out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="zarr 3 needs Python 3.11")
def test_the_store_needs_zarr_of_the_distributed_extra(tmp_path):
    run_hidden(
        """
        import torch
        from pullback_geom import PullbackMetric
        from pullback_geom.geodesics import pairwise_distances
        from pullback_geom.surfaces import InverseStereographic

        metric = PullbackMetric(InverseStereographic(), latent_dim=2)
        z = torch.randn(3, 2)
        fails_naming("distributed", lambda: pairwise_distances(metric, z, store="store"))
        """,
        tmp_path,
    )


def test_require_names_the_extra_and_what_is_missing(tmp_path, monkeypatch):
    # an importable library that imports a missing one
    (tmp_path / "tests_missing_dependency.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert require("json", "viz", "x") is sys.modules["json"]
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'pullback-geom[viz]'")):
        require("no_such_library_here", "viz", "pullback_geom.viz")
    # a library of the extra whose own dependency is missing: the same install fixes it
    with pytest.raises(ImportError, match="it could not import 'no_such_dependency'") as info:
        require("tests_missing_dependency", "viz", "pullback_geom.viz")
    assert info.value.name == "no_such_dependency"


# ---------------------------------------------------------------- pyproject's extras
def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(extra: str, extras: dict, seen=()) -> set[str]:
    """Distribution names an extra brings, its references to other extras followed."""
    from packaging.requirements import Requirement

    names = set()
    for line in extras[extra]:
        req = Requirement(line)
        if req.name == "pullback-geom":
            for other in req.extras - set(seen):
                names |= _names(other, extras, (*seen, extra))
        else:
            names.add(req.name)
            names |= {f"{req.name}[{e}]" for e in req.extras}
    return names


def test_the_extras_fit_together():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    core = {re.split(r"[<>=!;\[ ]", d)[0] for d in project["dependencies"]}
    assert core == {"torch", "numpy", "scipy", "tqdm"}
    assert set(extras) == {*EXTRAS, "all", "dev"}
    assert _names("all", extras) == set().union(*(_names(e, extras) for e in EXTRAS))
    tools = {"pytest", "hypothesis", "ruff", "nbclient", "nbformat", "ipykernel"}
    assert _names("dev", extras) == _names("all", extras) | tools
    # every optional library is hidden by the core test above
    imported = {"scikit-learn": "sklearn", "dask[distributed]": "distributed"}
    optional = {imported.get(n, n) for n in _names("all", extras)} - {"numpy"}
    assert optional <= set(OPTIONAL)


def test_the_constraints_pin_every_dependency_within_its_range():
    """CI installs with ``-c constraints.txt``: each pin must satisfy pyproject's ranges."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = _pyproject()["project"]
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.split("#")[0].strip():
            name, version = line.split("#")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    requirements = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    for line in requirements:
        req = Requirement(line)
        if req.name == "pullback-geom" or (req.marker and not req.marker.evaluate()):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt pins no {req.name}"
        assert Version(pins[name]) in req.specifier, f"{req.name}=={pins[name]}: {req}"
