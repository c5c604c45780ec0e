"""`python -m benchmark perf`: training-step throughput (throughput.py), stacked against single
(stacked.py) and against overcomplete (peers.py)."""
