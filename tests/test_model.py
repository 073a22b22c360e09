import pytest
import torch

from seqlstm import LSTMClassifier


def test_logits_shape_for_the_tutorial_model():
    model = LSTMClassifier()
    assert model(torch.rand(5, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize("batch, seq, features, classes", [(1, 1, 3, 2), (7, 50, 1, 4), (3, 28, 28, 10)])
def test_any_sequence_length_and_width(batch, seq, features, classes):
    model = LSTMClassifier(features, hidden_size=16, num_layers=3, num_classes=classes)
    assert model(torch.rand(batch, seq, features)).shape == (batch, classes)


def test_output_is_the_head_on_the_last_step_from_zero_state():
    torch.manual_seed(0)
    model = LSTMClassifier(4, hidden_size=8, num_layers=2, num_classes=3)
    x = torch.rand(2, 6, 4)
    zeros = torch.zeros(2, 2, 8)
    out, _ = model.lstm(x, (zeros, zeros))
    torch.testing.assert_close(model(x), model.fc(out[:, -1]))
    # Changing an early step changes the answer: the whole sequence is read, not just the last row.
    x2 = x.clone()
    x2[:, 0] += 1
    assert not torch.allclose(model(x), model(x2))


def test_state_follows_the_input_dtype():
    model = LSTMClassifier(4, 8, 1, 3).double()
    assert model(torch.rand(2, 5, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    model = LSTMClassifier().cuda()
    logits = model(torch.rand(3, 28, 28, device="cuda"))
    assert logits.device.type == "cuda" and logits.shape == (3, 10)
