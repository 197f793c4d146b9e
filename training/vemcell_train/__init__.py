"""Training, export and cross-validation of vemcell's segmentation networks (needs torch).

The runtime package :mod:`vemcell` never imports this package or torch; the ``vemcell train``,
``export`` and ``crossval`` commands import it lazily and say how to install the ``train`` extra
when torch is missing.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
