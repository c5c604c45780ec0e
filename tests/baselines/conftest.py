"""Fixtures for the variant tests."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """These tests run thousands of tiny tensor ops: a second thread only adds synchronisation,
    which costs 10-100x when the machine's cores are busy with other work (measured: the MP
    tests take 0.05 s on one thread and 7 s on two under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
