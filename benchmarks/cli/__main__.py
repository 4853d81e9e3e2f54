"""`python -m benchmarks.cli ...`: the same as `ftbench ...` (e.g. under `accelerate launch -m benchmarks.cli`)."""

import sys

from benchmarks.cli import main

sys.exit(main())
