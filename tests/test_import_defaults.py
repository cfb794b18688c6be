"""Importing the package leaves global state alone (checked in fresh interpreters)."""

import json
import os
import subprocess
import sys
import textwrap


def run(code: str, **env) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "GEOMSTATS_BACKEND"}, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_keeps_default_dtype_and_does_not_import_geomstats():
    out = run(
        """
        import json, os, sys
        import torch
        before = str(torch.get_default_dtype())
        import pullback_geom
        from pullback_geom import PullbackMetric
        from pullback_geom.surfaces import InverseStereographic
        metric = PullbackMetric(InverseStereographic())
        g = metric.metric_tensor(torch.zeros(2, 2))
        print(json.dumps({
            "before": before,
            "after": str(torch.get_default_dtype()),
            "result": str(g.dtype),
            "geomstats": "geomstats" in sys.modules,
            "backend": os.environ.get("GEOMSTATS_BACKEND"),
        }))
        """
    )
    assert out["before"] == out["after"] == out["result"] == "torch.float32"
    assert out["geomstats"] is False
    assert out["backend"] is None


def test_import_keeps_a_user_chosen_default_dtype():
    out = run(
        """
        import json, sys
        import torch
        torch.set_default_dtype(torch.float64)
        import pullback_geom
        import pullback_geom.metric, pullback_geom._core.derivatives, pullback_geom._core.chain
        import pullback_geom.surfaces
        print(json.dumps({
            "after": str(torch.get_default_dtype()),
            "geomstats": "geomstats" in sys.modules,
        }))
        """
    )
    assert out == {"after": "torch.float64", "geomstats": False}


def test_public_names():
    import pullback_geom

    assert {"PullbackMetric", "SingularMetricWarning"} <= set(pullback_geom.__all__)
    assert issubclass(pullback_geom.SingularMetricWarning, RuntimeWarning)
    assert isinstance(pullback_geom.__version__, str)
