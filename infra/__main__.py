"""Entry point for `pulumi up`: Pulumi.yaml names this folder as the program."""

import sys
from pathlib import Path

# Pulumi runs this file from infra/; the program is the `infra` package beside `tsunagu`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main

main()
