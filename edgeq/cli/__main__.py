"""`python -m edgeq.cli ...`, as the `edgeq` console script."""

import sys

from edgeq.cli import main

sys.exit(main())
