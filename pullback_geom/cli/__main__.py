"""``python -m pullback_geom.cli``: the ``pullback-geom`` command."""

import sys

from . import main

sys.exit(main())
