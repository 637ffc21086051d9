"""The Flex Template entry point: ``digestflow run`` with the flags the launcher passes.

The template launcher runs this file (``FLEX_TEMPLATE_PYTHON_PY_FILE`` in deploy/Dockerfile)
with the template parameters and pipeline options as arguments; ``python -m beam_jobs ...``
does the same locally.
"""

import sys

from beam_jobs.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
