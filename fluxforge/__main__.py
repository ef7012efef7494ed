"""`python -m fluxforge ...` runs the CLI (same as the `fluxforge` console script)."""
import sys

from .cli import main

sys.exit(main())
