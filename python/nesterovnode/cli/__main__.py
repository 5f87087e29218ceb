"""``python -m nesterovnode.cli ...`` (what torchrun runs: ``-m nesterovnode.cli``)."""

import sys

from . import main

sys.exit(main())
