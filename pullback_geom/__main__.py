"""``python -m pullback_geom``: the ``pullback-geom`` command."""

import sys

from .cli import main

sys.exit(main())
