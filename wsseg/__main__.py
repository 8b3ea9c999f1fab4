"""``python -m wsseg``: the command line (guarded: worker processes re-import this module)."""

import sys

from wsseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
