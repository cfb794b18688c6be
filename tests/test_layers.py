"""The dependency rule: imports point down the layers, never up, and never in a cycle.

core (``_core``, ``surfaces``) <- ``metric`` <- ``geodesics`` <- adapters (``geomstats``,
``stochman``) <- models, data and training <- ``viz`` <- ``experiments`` <- ``cli``.

Every import counts, the lazy ones inside functions included, and none is exempt
(``WHITELIST`` is empty; the checker still honours one, as a synthetic tree tests). The
checker itself is tested on synthetic trees.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pullback_geom"

#: top-level part of a module's name -> its layer (higher may import lower)
LAYERS = {
    "_core": 0,
    "surfaces": 0,
    "metric": 1,
    "_metric_curvature": 1,
    "": 1,  # the package itself re-exports the metric
    "geodesics": 2,
    "geomstats": 3,
    "stochman": 3,
    "vae": 4,
    "data": 4,
    "training": 4,
    "viz": 5,
    "experiments": 6,
    "cli": 7,
    "__main__": 7,
}

#: (importer, imported module, names): the allowed upward imports; none
WHITELIST: set[tuple[str, str, tuple[str, ...]]] = set()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, dict[str, set[str]]]:
    """``{module: {imported module: names}}`` over every ``.py`` file under ``root``.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module,
    else of ``pkg`` (for its attribute ``name``). Imports of other packages are ignored.
    """
    top = root.name
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, set[str]]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, set[str]] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top:
                        edges.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != top:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in files:
                        edges.setdefault(sub, set())
                    else:
                        edges.setdefault(target, set()).add(alias.name)
        edges.pop(mod, None)
        graph[mod] = edges
    return graph


def layer(mod: str, layers: dict[str, int]) -> int:
    parts = mod.split(".")
    key = parts[1] if len(parts) > 1 else ""
    if key not in layers:
        raise AssertionError(f"module {mod} belongs to no layer: add it to LAYERS")
    return layers[key]


def upward_imports(graph, layers, whitelist) -> list[str]:
    """Imports that point up the layers and are not whitelisted."""
    bad = []
    for mod, edges in graph.items():
        for target, names in edges.items():
            if layer(target, layers) <= layer(mod, layers):
                continue
            if any(
                mod == w_mod and target == w_target and names <= set(w_names)
                for w_mod, w_target, w_names in whitelist
            ):
                continue
            bad.append(
                f"{mod} imports {target} (layer {layer(mod, layers)} -> {layer(target, layers)})"
            )
    return bad


def private_imports(graph) -> list[str]:
    """``from module import _name`` where ``module`` is public: its private business."""
    bad = []
    for mod, edges in graph.items():
        for target, names in edges.items():
            private_module = any(part.startswith("_") for part in target.split(".")[1:])
            for name in names:
                if name.startswith("_") and not name.startswith("__") and not private_module:
                    bad.append(f"{mod} takes the private name {name} from {target}")
    return bad


def cycles(graph, whitelist) -> list[list[str]]:
    """Import cycles (each as a list of modules), whitelisted edges left out."""
    allowed = {(w_mod, w_target) for w_mod, w_target, _ in whitelist}
    adj = {
        m: sorted(t for t in e if t in graph and (m, t) not in allowed) for m, e in graph.items()
    }
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in adj[m]:
            if state.get(t) == 1:
                found.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(adj):
        if m not in state:
            visit(m)
    return found


# ---------------------------------------------------------------- the package itself
def test_package_imports_point_down_the_layers():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # the walk saw the package
    assert upward_imports(graph, LAYERS, WHITELIST) == []


def test_package_has_no_import_cycles():
    assert cycles(import_graph(PACKAGE), WHITELIST) == []


def test_every_import_of_the_package_resolves():
    """A relative import one dot short (``..stochman`` from a subpackage) names a module
    that does not exist; lazy ones would fail only when called."""
    graph = import_graph(PACKAGE)
    modules = set(graph)
    missing = sorted(
        f"{mod} imports {target}"
        for mod, edges in graph.items()
        for target in edges
        if target not in modules
    )
    assert missing == []


def test_private_names_come_only_from_private_modules():
    assert private_imports(import_graph(PACKAGE)) == []


def test_importing_the_library_loads_no_application_dependency():
    """``import pullback_geom, .geodesics, .vae`` leaves the heavy optional libraries alone."""
    code = (
        "import sys, pullback_geom, pullback_geom.geodesics, pullback_geom.vae\n"
        "pullback_geom.PullbackMetric\n"
        "heavy = ('geomstats', 'stochman', 'matplotlib', 'scipy', 'sklearn', 'pandas',\n"
        "         'dask', 'distributed', 'zarr')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_root_loads_torch_only_when_asked():
    code = "import sys, pullback_geom\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_module_imports():
    for mod in import_graph(PACKAGE):
        if mod.endswith("__main__"):
            continue
        importlib.import_module(mod)


# ---------------------------------------------------------------- the checker, tested
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pullback_geom"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return root


def test_checker_catches_a_lazy_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "metric.py": "",
            "geodesics/energy.py": (
                "from ..metric import PullbackMetric\n"
                "def solve():\n"
                "    from ..experiments import learning\n"
                "    return learning\n"
            ),
            "experiments/learning.py": "from ..geodesics.energy import solve\n",
        },
    )
    graph = import_graph(root)
    assert graph["pullback_geom.geodesics.energy"] == {
        "pullback_geom.metric": {"PullbackMetric"},
        "pullback_geom.experiments.learning": set(),
    }
    bad = upward_imports(graph, LAYERS, WHITELIST)
    assert bad == [
        "pullback_geom.geodesics.energy imports pullback_geom.experiments.learning (layer 2 -> 6)"
    ]
    # ... and the cycle it closes
    assert cycles(graph, WHITELIST) == [
        [
            "pullback_geom.experiments.learning",
            "pullback_geom.geodesics.energy",
            "pullback_geom.experiments.learning",
        ]
    ]


def test_checker_allows_the_whitelisted_names_only(tmp_path):
    allowed = {
        (
            "pullback_geom.geodesics",
            "pullback_geom.experiments.compare",
            ("MethodRow", "compare_geodesics"),
        )
    }

    def tree(names: str) -> dict:
        return import_graph(
            _tree(
                tmp_path / names.replace(", ", "_"),
                {
                    "geodesics/__init__.py": (
                        f"def __getattr__(name):\n    from ..experiments.compare import {names}\n"
                    ),
                    "experiments/compare.py": "",
                },
            )
        )

    assert upward_imports(tree("compare_geodesics, MethodRow"), LAYERS, allowed) == []
    assert len(upward_imports(tree("compare_geodesics, helper"), LAYERS, allowed)) == 1
    assert len(upward_imports(tree("compare_geodesics, MethodRow"), LAYERS, WHITELIST)) == 1


def test_checker_catches_private_names_of_public_modules(tmp_path):
    root = _tree(
        tmp_path,
        {
            "metric.py": "_CHUNK = 1\n",
            "_core/evaluate.py": "_BUDGET = 1\n",
            "geodesics/energy.py": (
                "from ..metric import _CHUNK\nfrom .._core.evaluate import _BUDGET\n"
            ),
        },
    )
    assert private_imports(import_graph(root)) == [
        "pullback_geom.geodesics.energy takes the private name _CHUNK from pullback_geom.metric"
    ]


def test_checker_rejects_a_module_outside_the_layers(tmp_path):
    root = _tree(tmp_path, {"misc.py": "from .metric import x\n", "metric.py": ""})
    with pytest.raises(AssertionError, match="belongs to no layer"):
        upward_imports(import_graph(root), LAYERS, WHITELIST)


# ---------------------------------------------------------------- the public paths
PUBLIC = {
    "pullback_geom": ["PullbackMetric", "SingularMetricWarning"],
    "pullback_geom.geodesics": [
        "connecting_geodesic",
        "geodesic_distance",
        "exp_map",
        "log_map",
        "pairwise_distances",
        "distance_block",
        "block_slices",
        "graph_geodesics",
        "latent_graph",
    ],
    "pullback_geom.geomstats": ["latent_space"],
    "pullback_geom.stochman": ["DecoderManifold"],
    "pullback_geom.vae": [
        "load",
        "load_default",
        "default_checkpoint",
        "load_latents",
        "BernoulliVAE",
        "GaussianVAE",
        "EnsembleVAE",
    ],
    "pullback_geom.training": [
        "train_vae",
        "TrainConfig",
        "TrainResult",
        "encode_images",
        "evaluate",
    ],
    "pullback_geom.experiments.compare": ["compare_geodesics", "GeodesicComparison", "MethodRow"],
    "pullback_geom.cli": ["main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_import_paths_are_kept(module):
    mod = importlib.import_module(module)
    for name in PUBLIC[module]:
        assert callable(getattr(mod, name)), f"{module}.{name}"


def test_the_command_answers_version_and_runs_as_a_module():
    import pullback_geom

    out = subprocess.run(
        [sys.executable, "-m", "pullback_geom", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"pullback-geom {pullback_geom.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "pullback_geom", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: pullback-geom" in out.stdout
