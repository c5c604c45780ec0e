"""The grid: what to run (plan), running it (runner, isolation, the Ray executor), and the
passes over finished models (twins, seed stability)."""
