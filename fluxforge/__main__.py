"""`python -m fluxforge ...` runs the CLI (same as the `fluxforge` console script)."""
import sys

from fluxforge.cli import main

sys.exit(main())
