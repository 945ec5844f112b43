"""``python -m selfdamage``: the command line, see :mod:`selfdamage.cli`."""

from __future__ import annotations

import sys

from selfdamage.cli import main

if __name__ == "__main__":
    sys.exit(main())
