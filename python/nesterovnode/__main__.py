"""``python -m nesterovnode ...``: the ``nesterovnode`` command."""

import sys

from .cli import main

sys.exit(main())
