"""Synthetic data: the C. merolae cell generator used for training, tests and the demo."""
