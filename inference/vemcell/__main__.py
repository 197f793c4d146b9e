"""Allow ``python -m vemcell`` (the Blender add-on starts the backend this way)."""

import sys

from vemcell.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
