"""The comparison's result: one :class:`MethodRow` per method, gathered in a
:class:`GeodesicComparison` that renders the table and diagnoses each pair."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["GEODESIC_RESIDUAL", "GeodesicComparison", "MethodRow"]

# Residual below which a converged curve counts as a geodesic in the diagnosis (its
# geodesic curvature turns it by less than 0.05 rad over its whole length).
GEODESIC_RESIDUAL = 0.05


@dataclass
class MethodRow:
    """One method's results on ``B`` pairs (NaN where the method produced no curve).

    Attributes
    ----------
    method : str
    length, energy, residual, endpoint_error, roundtrip_error : Tensor, shape (B,)
        See the module docstring.
    converged : Tensor, shape (B,), bool
    seconds : float
        Wall time of the method on all pairs.
    error : str or None
        Why the method failed as a whole (an exception's message), else None.
    """

    method: str
    length: Tensor
    energy: Tensor
    residual: Tensor
    endpoint_error: Tensor
    roundtrip_error: Tensor
    converged: Tensor
    seconds: float
    error: str | None = None


@dataclass
class GeodesicComparison:
    """What :func:`compare_geodesics` found.

    Attributes
    ----------
    p, q : Tensor, shape (B, d)
    curves : dict of str to Tensor, shape (B, n_eval, d)
        Each method's curve reparametrised to constant speed (NaN where it has none).
    rows : dict of str to MethodRow
    reference : str
        The method the others' lengths are compared with.
    agree_rtol : float
        Relative length difference counted as agreement.
    skipped : dict of str to str
        Default methods left out, with the reason.
    exact : Tensor, shape (B,), optional
        Closed-form distances, when known (e.g. great circles on the sphere).
    """

    p: Tensor
    q: Tensor
    curves: dict[str, Tensor]
    rows: dict[str, MethodRow]
    reference: str
    agree_rtol: float = 1e-3
    skipped: dict[str, str] = field(default_factory=dict)
    exact: Tensor | None = None

    def relative_length_difference(self, method: str) -> Tensor:
        """``(L_method - L_reference) / L_reference`` per pair, shape (B,)."""
        ref = self.rows[self.reference].length
        return (self.rows[method].length - ref) / ref.clamp_min(1e-300)

    def agreement(self, method: str) -> tuple[int, int]:
        """``(agree, both)``: pairs where ``method`` and the reference both converged, and
        how many of them agree in length to ``agree_rtol``."""
        row, ref = self.rows[method], self.rows[self.reference]
        both = row.converged & ref.converged
        close = self.relative_length_difference(method).abs() <= self.agree_rtol
        return int((both & close).sum()), int(both.sum())

    def diagnosis(self, method: str) -> list[str]:
        """Per pair, how ``method``'s curve relates to the reference's, and if they differ
        the likely reason.

        Returns
        -------
        list of str, length B
            ``"agrees"`` when the curve reaches ``q`` and the lengths agree to
            ``agree_rtol``; otherwise the difference and its likely cause: no curve, does
            not reach ``q``, stopped early, another (longer) geodesic when the residual is
            below 0.05, not a geodesic at this resolution, or a shorter curve than the
            reference's.
        """
        row = self.rows[method]
        if row.error is not None:
            return [f"failed: {row.error}"] * len(self.p)
        rel = self.relative_length_difference(method)
        out = []
        for i in range(len(self.p)):
            r, res = float(rel[i]), float(row.residual[i])
            conv = bool(row.converged[i])
            if not math.isfinite(float(row.length[i])):
                out.append("no curve (diverged)")
            elif float(row.endpoint_error[i]) > self.agree_rtol:
                # A curve that does not end at q: its length is not a distance p -> q.
                out.append(
                    f"does not reach q (misses it by {float(row.endpoint_error[i]):.1e} |p-q|)"
                )
            elif abs(r) <= self.agree_rtol:
                out.append("agrees")
            elif r > 0 and not conv:
                out.append(f"longer by {r:.1e}: stopped early (residual {res:.2g})")
            elif r > 0 and res < GEODESIC_RESIDUAL:
                out.append(
                    f"longer by {r:.1e}: another geodesic, not minimising (residual {res:.2g})"
                )
            elif r > 0:
                out.append(
                    f"longer by {r:.1e}: converged by its own test, but not a geodesic at "
                    f"this resolution (residual {res:.2g})"
                )
            else:
                out.append(
                    f"shorter by {-r:.1e}: {self.reference}'s curve is not minimal (a local "
                    "minimum, or under-resolved)" + ("" if conv else "; stopped early")
                )
        return out

    def to_arrays(self) -> dict[str, Tensor]:
        """Every number of the comparison as flat arrays (for ``numpy.savez``).

        Returns
        -------
        dict of str to Tensor
            ``"p"``, ``"q"`` (B, d); ``"exact"`` (B,) when known; per method ``m``:
            ``"m.length"``, ``"m.energy"``, ``"m.residual"``, ``"m.endpoint_error"``,
            ``"m.roundtrip_error"``, ``"m.converged"`` (B,), ``"m.seconds"`` (a scalar)
            and ``"m.curve"`` (B, n_eval, d), the constant-speed curve.
        """
        out = {"p": self.p.detach(), "q": self.q.detach()}
        if self.exact is not None:
            out["exact"] = self.exact.detach()
        for name, row in self.rows.items():
            for key in ("length", "energy", "residual", "endpoint_error", "roundtrip_error"):
                out[f"{name}.{key}"] = getattr(row, key).detach()
            out[f"{name}.converged"] = row.converged
            out[f"{name}.seconds"] = torch.tensor(row.seconds)
            if name in self.curves:
                out[f"{name}.curve"] = self.curves[name].detach()
        return out

    def to_markdown(self) -> str:
        """The summary table (one row per method) and the per-pair length table."""
        b = len(self.p)
        exact = self.exact is not None
        lines = [
            f"{b} pairs; lengths compared with `{self.reference}` (agreement: relative "
            f"length difference <= {self.agree_rtol:g} where both converged).",
            "",
            "| method | converged | agrees (of both converged) | median length | "
            "median rel. length diff. | max residual (median over pairs) | "
            "max end-point error | median round-trip error | s/pair |"
            + (" median rel. error vs exact |" if exact else ""),
            "|---" * (9 + exact) + "|",
        ]
        for name, row in self.rows.items():
            if row.error is not None:
                lines.append(f"| {name} | failed: {_cell(row.error)} | | | | | | | "
                             f"{row.seconds / b:.3g} |")  # fmt: skip
                continue
            agree, both = self.agreement(name)
            rel = self.relative_length_difference(name).abs()
            lines.append(
                f"| {name} | {int(row.converged.sum())}/{b} | {agree}/{both} | "
                f"{_num(row.length.nanmedian())} | {_num(rel.nanmedian())} | "
                f"{_num(row.residual.nanmedian())} | {_num(_nanmax(row.endpoint_error))} | "
                f"{_num(row.roundtrip_error.nanmedian())} | {row.seconds / b:.3g} |"
                + (f" {_num(((row.length - self.exact) / self.exact).abs().nanmedian())} |"
                   if exact else "")
            )  # fmt: skip
        for name, why in self.skipped.items():
            lines.append(f"| {name} | skipped: {_cell(why)} | | | | | | | |")
        names = list(self.rows)
        lines += [
            "",
            "Per pair: length (✗ = not converged, ↯ = no curve); last column: why methods "
            f"disagree with `{self.reference}`.",
            "",
            "| pair | ‖p − q‖ | "
            + ("exact | " if exact else "")
            + " | ".join(names)
            + " | disagreements |",
            "|---" * (len(names) + 3 + exact) + "|",
        ]
        diag = {n: self.diagnosis(n) for n in names}
        for i in range(b):
            cells = []
            for n in names:
                row = self.rows[n]
                val = float(row.length[i])
                if row.error is not None or not math.isfinite(val):
                    cells.append("↯")
                else:
                    cells.append(f"{val:.5g}" + ("" if bool(row.converged[i]) else " ✗"))
            # Failed methods are explained once, in the summary table.
            notes = "; ".join(
                f"{n}: {diag[n][i]}"
                for n in names
                if diag[n][i] != "agrees" and self.rows[n].error is None
            )
            dist = float(torch.linalg.vector_norm(self.q[i] - self.p[i]))
            if exact:
                cells.insert(0, f"{float(self.exact[i]):.5g}")
            cells = " | ".join(cells)
            lines.append(f"| {i} | {dist:.3g} | {cells} | {_cell(notes, 600) or '-'} |")
        return "\n".join(lines) + "\n"


def _cell(text: str, width: int = 200) -> str:
    return text.replace("|", "/").replace("\n", " ")[:width]


def _num(x) -> str:
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if abs(x) >= 1e-2 or x == 0 else f"{x:.1e}"


def _nanmax(x: Tensor) -> Tensor:
    finite = x[~torch.isnan(x)]
    return finite.max() if finite.numel() else x.new_tensor(float("nan"))
