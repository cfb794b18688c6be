"""The ``pullback-geom`` command line: one module per subcommand (``report`` holds
``demo`` and ``report``), argument types in :mod:`~pullback_geom.cli.options`, shared
helpers in :mod:`~pullback_geom.cli.common`.

Building the parser imports no torch, so ``--help`` and ``--version`` answer at once;
each subcommand imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (imports nothing heavy)."""
    from .. import __version__
    from .compare import add_compare_parser
    from .distances import add_distances_parser
    from .identifiability import add_identifiability_parser
    from .report import add_demo_parser, add_report_parser
    from .train import add_train_parser

    parser = argparse.ArgumentParser(
        prog="pullback-geom",
        description="Riemannian geometry of generative models' latent spaces.",
    )
    parser.add_argument("--version", action="version", version=f"pullback-geom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_parser(sub)
    add_report_parser(sub)
    add_train_parser(sub)
    add_compare_parser(sub)
    add_distances_parser(sub)
    add_identifiability_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pullback-geom`` console command; its exit status.

    0 on success; 2 for a usage error or a problem with the user's files (a message
    ``pullback-geom <command>: error: ...`` on stderr, no traceback); 130 when interrupted.
    """
    from .._core.progress import QUIET_ENV
    from .common import describe_os_error, error, settle_folders

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error argparse reported
        return int(done.code or 0)
    args.argv = argv[1:]
    if getattr(args, "quiet", False):
        os.environ[QUIET_ENV] = "1"  # inherited by worker processes started later
    # torch scripts its forward-mode decompositions on first use and warns about its own
    # deprecated torch.jit.script; that is noise for a user of this command.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
    try:
        status = args.func(args)
    except OSError as err:  # unreadable data, an unwritable --out, a full disk, ...
        status = error(args.command, describe_os_error(err))
    except (ValueError, ImportError) as err:  # bad input found late; a missing extra
        status = error(args.command, err)
    except KeyboardInterrupt:
        print(f"pullback-geom {args.command}: interrupted", file=sys.stderr)
        status = 130
    settle_folders(failed=status != 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
