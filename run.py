#!/usr/bin/env python3
"""Run one NotiSync node: ``python run.py --help`` lists every flag."""
import sys

from notisync.runtime.server import main

if __name__ == "__main__":
    sys.exit(main())
