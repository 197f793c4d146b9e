"""Cells: telling cells from resin (SAM, U-Net or threshold) and splitting them by 3D watershed."""
