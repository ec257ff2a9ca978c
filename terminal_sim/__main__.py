import sys

from terminal_sim.cli import main

sys.exit(main())
