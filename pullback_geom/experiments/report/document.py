"""The report's files: figures and a Markdown document, written to a folder atomically."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Section",
    "figure_bytes",
    "render_markdown",
    "save_arrays",
    "save_figure",
    "staged_folder",
]

#: Files that mark a folder as a report folder this package may replace.
MARKERS = ("report.md", "numbers.json")


@dataclass
class Section:
    """One part of the report: prose, figures and a table of numbers.

    Attributes
    ----------
    title : str
    text : list of str
        Paragraphs (Markdown).
    figures : list of (str, str)
        ``(file name, caption)`` of PNGs in the report folder.
    rows : list of (str, str)
        ``(quantity, value)`` rows of the section's table.
    """

    title: str
    text: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a bare ``|`` (as in ``|K|``) would split it."""
    return str(text).replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(title: str, intro: list[str], sections: list[Section]) -> str:
    """The report document: a title, an introduction, then each section in order."""
    lines = [f"# {title}", ""]
    for paragraph in intro:
        lines += [paragraph, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for paragraph in s.text:
            lines += [paragraph, ""]
        if s.rows:
            lines += ["| quantity | value |", "|---|---|"]
            lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in s.rows]
            lines.append("")
        for name, caption in s.figures:
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(lines)


#: Per format, the metadata that would otherwise stamp the file with the time it was
#: written: without it, the same figure gives the same bytes.
_TIMELESS = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def figure_bytes(fig, dpi: int = 110, format: str = "png") -> bytes:
    """A matplotlib figure rendered in memory: ``"png"`` (at ``dpi``), ``"pdf"`` or
    ``"svg"`` (vector; ``dpi`` only sets their embedded images' resolution)."""
    if format not in _TIMELESS:
        raise ValueError(f"figure format {format!r}: choose from {', '.join(_TIMELESS)}")
    import matplotlib

    buffer = io.BytesIO()
    # A fixed salt: SVG element ids are otherwise random on every save.
    with matplotlib.rc_context({"svg.hashsalt": "pullback-geom"}):
        fig.savefig(buffer, format=format, dpi=dpi, bbox_inches="tight", metadata=_TIMELESS[format])
    return buffer.getvalue()


def save_figure(
    fig, path: Path, dpi: int = 110, formats: tuple[str, ...] | list[str] = ("png",)
) -> list[Path]:
    """Write a figure once per format, as ``path`` with each format's suffix, atomically.

    Returns
    -------
    list of Path
        The files written, in the order of ``formats``.
    """
    from ...vae.checkpoint import atomic_write_bytes

    paths = []
    for fmt in formats:
        target = Path(path).with_suffix(f".{fmt}")
        atomic_write_bytes(target, figure_bytes(fig, dpi, fmt))
        paths.append(target)
    return paths


def save_arrays(path: Path, arrays: dict) -> None:
    """The numbers behind a figure as a ``.npz`` (``numpy.load(path)``), atomically."""
    import numpy as np

    from ...vae.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()

    def plain(value):
        if hasattr(value, "detach"):  # a tensor, on any device
            return value.detach().cpu().numpy()
        return np.asarray(value)

    np.savez_compressed(buffer, **{k: plain(v) for k, v in arrays.items()})
    atomic_write_bytes(Path(path), buffer.getvalue())


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _is_replaceable(folder: Path) -> bool:
    return not any(folder.iterdir()) or all((folder / m).is_file() for m in MARKERS)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name, then move it to ``out`` in one rename.

    A reader never sees a half-written report: on error the temporary folder is removed
    and ``out`` is left as it was. An existing ``out`` is replaced only if it is empty or
    an earlier report (it holds ``report.md`` and ``numbers.json``).

    Yields
    ------
    Path
        The temporary folder to write into.

    Raises
    ------
    FileExistsError
        ``out`` exists and is a file, or a non-empty folder that is not a report.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or not _is_replaceable(out)):
        raise FileExistsError(
            f"{out} exists and is not a pullback-geom report folder (no {' and '.join(MARKERS)}); "
            "choose another --out or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the report is not
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
