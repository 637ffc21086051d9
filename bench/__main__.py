"""``make bench``: ``python -m bench [options]`` (see :mod:`bench.harness`)."""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
