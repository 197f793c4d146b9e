"""Evaluation and metrics: IoU, boundary offsets and instance scores against ground truth."""
