"""Training: the shared loop (loop.py) and stacked models (stacking.py)."""
