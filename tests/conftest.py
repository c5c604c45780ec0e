"""Fixtures shared across the test suite."""
import textwrap

import pytest

TINY_PRESET = """\
description: tiny preset for tests
seeds: [0]
n_latents: 16
train: {epochs: 1, batch_size: 128, lr: 0.001}
datasets:
  digits8: {}
tasks:
  reconstruction: {datasets: [digits8]}
  sparsity: {datasets: [digits8]}
variants:
  relu: {l1_coeff: 0.05}
  topk: {k: 4, aux_k: 8}
"""


@pytest.fixture
def tiny_preset(tmp_path):
    """Path of a preset YAML that runs in about a second per variant."""
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY_PRESET))
    return path
