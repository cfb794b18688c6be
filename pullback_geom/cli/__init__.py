"""The ``pullback-geom`` command line: one module per subcommand (``report`` holds
``demo`` and ``report``), shared helpers in :mod:`~pullback_geom.cli.common`."""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pullback-geom`` console command."""
    from .compare import add_compare_parser
    from .distances import add_distances_parser
    from .identifiability import add_identifiability_parser
    from .report import add_demo_parser, add_report_parser
    from .train import add_train_parser

    # torch scripts its forward-mode decompositions on first use and warns about its own
    # deprecated torch.jit.script; that is noise for a user of this command.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
    parser = argparse.ArgumentParser(
        prog="pullback-geom",
        description="Riemannian geometry of generative models' latent spaces.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"pullback-geom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(sub)
    add_report_parser(sub)
    add_train_parser(sub)
    add_compare_parser(sub)
    add_distances_parser(sub)
    add_identifiability_parser(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
