"""Run the Makini sandbox from the command line: `python -m pipelines.sandbox --port 8765`.

The server and its options live in `makini_sandbox/__main__.py` (`python -m makini_sandbox --help`).
"""
from __future__ import annotations

import sys

from makini_sandbox.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
