"""`python -m agent ...`: the same as the `loyalty-agent` entry point."""

import sys

from agent.cli import main

sys.exit(main())
