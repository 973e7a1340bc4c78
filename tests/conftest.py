"""Fixtures shared by the torch model tests (opt-in, so tests without torch never import it)."""

import pytest


@pytest.fixture
def torch_one_thread():
    """Tiny tensors: a second OpenMP thread only waits, ~10x slower on a shared 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A tiny random-weight recognizer exported to ONNX (encoder, decoder step, vocab, record)."""
    from recognizer_helpers import export_tiny_bundle

    return export_tiny_bundle(tmp_path_factory.mktemp("models"))
