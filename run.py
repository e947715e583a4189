#!/usr/bin/env python3
"""alignvar-bench command line. ``python run.py --help`` lists the commands."""

import sys

from harness.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
