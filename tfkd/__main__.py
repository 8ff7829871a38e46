"""`python -m tfkd <tool> [flags]`: the same as the `tfkd` command."""

import sys

from tfkd.cli.main import main

sys.exit(main())
