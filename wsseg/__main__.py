import sys

from wsseg.cli import main

sys.exit(main())
