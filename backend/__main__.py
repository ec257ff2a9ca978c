"""`python -m backend ...` is `loyalty-backend ...`."""

import sys

from backend.cli import main

sys.exit(main())
