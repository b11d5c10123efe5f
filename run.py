#!/usr/bin/env python3
"""Run one NotiSync node: ``python run.py --help`` lists every flag; ``python run.py adduser EMAIL`` makes an account."""
import sys

try:
    from notisync.runtime.server import main
except KeyboardInterrupt:  # Ctrl-C while the imports ran: nothing has started yet
    sys.stderr.write("run.py: error: interrupted while starting\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
