"""``python -m clustering``: the same as the ``clustering`` command."""

import sys

from .cli import main

sys.exit(main())
