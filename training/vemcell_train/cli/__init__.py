"""Command-line verbs of the training package, registered with ``vemcell`` as entry points.

Each module defines ``HELP``, ``add_arguments(parser)`` and ``run(args)``; none imports torch
at import time, so ``vemcell --help`` stays light.
"""
