"""``python -m notisync``: the same command as the ``notisync`` console script."""
import sys

from notisync.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
