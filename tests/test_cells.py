"""The explicit cells against PyTorch's fused ones and against the tutorial's equations."""

import pytest
import torch
from torch import nn

from seqlstm import ConfigError, LSTMClassifier, TrainConfig, trace_gates
from seqlstm.model.cells import TRACED, ExplicitGRU, ExplicitLSTM, SeedRNN, unroll

SHAPES = [
    # batch, seq, input, hidden, layers
    (1, 1, 1, 1, 1),
    (3, 7, 5, 4, 2),
    (4, 28, 28, 32, 3),
    (2, 11, 3, 17, 1),
]
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def random_state(layers, batch, hidden):
    return torch.randn(layers, batch, hidden), torch.randn(layers, batch, hidden)


def assert_same_run(fused, explicit, x, state):
    """Outputs, final states and every parameter's gradient agree for the same weights and loss."""
    out_f, state_f = fused(x, state)
    out_e, state_e = explicit(x, state)
    torch.testing.assert_close(out_e, out_f, **TOLERANCE)
    for a, b in zip(state_e if isinstance(state_e, tuple) else (state_e,), state_f if isinstance(state_f, tuple) else (state_f,)):
        torch.testing.assert_close(a, b, **TOLERANCE)
    # A loss that touches every output and final state with a different weight, so a swapped gate
    # block or a missing term cannot hide behind symmetry.
    weights = torch.randn_like(out_f)
    for module, out, final in ((fused, out_f, state_f), (explicit, out_e, state_e)):
        finals = final if isinstance(final, tuple) else (final,)
        loss = (out * weights).sum() + sum(s.pow(2).sum() for s in finals)
        module.zero_grad()
        loss.backward()
    grads_f = {n: p.grad for n, p in fused.named_parameters()}
    grads_e = {n: p.grad for n, p in explicit.named_parameters()}
    assert grads_e.keys() == grads_f.keys()
    for name in grads_f:
        torch.testing.assert_close(grads_e[name], grads_f[name], **TOLERANCE, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("fused_class, explicit_class", [(nn.LSTM, ExplicitLSTM), (nn.GRU, ExplicitGRU)])
@pytest.mark.parametrize("batch, seq, features, hidden, layers", SHAPES)
def test_explicit_cell_is_the_fused_one(fused_class, explicit_class, batch, seq, features, hidden, layers):
    torch.manual_seed(seq + hidden)
    fused = fused_class(features, hidden, layers, batch_first=True)
    explicit = explicit_class(features, hidden, layers)
    # The same names and shapes: a fused state dict loads into the explicit cell as it is.
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(batch, seq, features)
    state = random_state(layers, batch, hidden)
    assert_same_run(fused, explicit, x, state if fused_class is nn.LSTM else state[0])
    assert_same_run(fused, explicit, x, None)


def seed_by_the_book(x, params, layers, a0, c0):
    """The tutorial's four equations, transcribed literally: concatenations, one step at a time."""
    sigma, tanh = torch.sigmoid, torch.tanh
    for k in range(layers):
        W_g, b_g = params[f"weight_gates_l{k}"], params[f"bias_gates_l{k}"]
        W_c, b_c = params[f"weight_candidate_l{k}"], params[f"bias_candidate_l{k}"]
        hidden = b_c.shape[0]
        a, c = a0[k], c0[k]
        outputs = []
        for t in range(x.shape[1]):
            x_t = x[:, t]
            g = sigma(torch.cat([a, x_t], dim=1) @ W_g.T + b_g)
            G_u, G_f, G_o, G_r = g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden : 3 * hidden], g[:, 3 * hidden :]
            c_tilde = tanh(torch.cat([G_r * a, x_t], dim=1) @ W_c.T + b_c)
            c = G_u * c_tilde + G_f * c
            a = G_o * c
            outputs.append(a)
        x = torch.stack(outputs, dim=1)
    return x


@pytest.mark.parametrize("batch, seq, features, hidden, layers", SHAPES)
def test_seed_cell_is_the_four_equations(batch, seq, features, hidden, layers):
    torch.manual_seed(seq + hidden)
    cell = SeedRNN(features, hidden, layers)
    x = torch.randn(batch, seq, features)
    a0, c0 = random_state(layers, batch, hidden)
    out, (a_n, c_n) = cell(x, (a0, c0))
    expected = seed_by_the_book(x, dict(cell.named_parameters()), layers, a0, c0)
    torch.testing.assert_close(out, expected, **TOLERANCE)
    torch.testing.assert_close(a_n[-1], expected[:, -1], **TOLERANCE)


def test_seed_cell_is_trainable_in_every_parameter():
    cell = SeedRNN(3, 5, 2)
    out, _ = cell(torch.randn(2, 4, 3))
    out.sum().backward()
    for name, p in cell.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", ["lstm", "gru", "seed"])
def test_trace_gates_shapes_and_last_step_is_the_model_output(cell):
    torch.manual_seed(1)
    model = LSTMClassifier(6, hidden_size=9, num_layers=2, num_classes=4, cell=cell).eval()
    x = torch.rand(3, 5, 6)
    trace = trace_gates(model, x)
    assert set(trace) == set(TRACED[cell]) | {"probabilities"}
    for name in TRACED[cell]:
        assert trace[name].shape == (2, 3, 5, 9), name
    assert trace["probabilities"].shape == (3, 5, 4)
    torch.testing.assert_close(trace["probabilities"][:, -1], model(x).softmax(-1), rtol=0, atol=1e-5)
    # Gates are sigmoids, candidates tanh: in range by construction, and not all saturated or equal.
    for name in ("update", "reset", "forget", "output", "relevance"):
        if name in trace:
            assert 0 < trace[name].min() and trace[name].max() < 1 and trace[name].std() > 0, name
    torch.testing.assert_close(trace["probabilities"].sum(-1), torch.ones(3, 5))


def test_trace_gates_follows_the_steps():
    """The probabilities at step t are the head on the hidden state after reading only steps 1..t."""
    torch.manual_seed(2)
    model = LSTMClassifier(4, hidden_size=8, num_layers=2, num_classes=3, cell="lstm").eval()
    x = torch.rand(2, 6, 4)
    trace = trace_gates(model, x)
    for t in range(1, 7):
        torch.testing.assert_close(trace["probabilities"][:, t - 1], model(x[:, :t]).softmax(-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(trace["hidden"][-1, :, -1], model.lstm(x)[0][:, -1], rtol=0, atol=1e-6)


def test_unknown_cell_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown cell 'rnn'; use one of lstm, gru, seed"):
        LSTMClassifier(cell="rnn")
    with pytest.raises(ConfigError, match="unknown cell 'LSTM'"):
        TrainConfig(cell="LSTM")
    with pytest.raises(ConfigError, match="unknown cell"):
        unroll("rnn", nn.LSTM(2, 3), torch.rand(1, 2, 2))


@pytest.mark.parametrize("cell", ["gru", "seed"])
def test_recipe_init_opens_the_memory_gate_of_every_cell(cell):
    from seqlstm.model import lstm_init

    torch.manual_seed(0)
    hidden = 6
    core = LSTMClassifier(4, hidden_size=hidden, num_layers=2, num_classes=3, cell=cell).lstm
    before = {n: p.detach().clone() for n, p in core.named_parameters()}
    lstm_init(core)
    eye = torch.eye(hidden)
    for k in range(2):
        if cell == "gru":
            bias = getattr(core, f"bias_ih_l{k}")
            recurrent = [getattr(core, f"weight_hh_l{k}")]
            assert getattr(core, f"bias_hh_l{k}").abs().sum() == 0
            input_weights = f"weight_ih_l{k}"
        else:
            bias = getattr(core, f"bias_gates_l{k}")
            recurrent = [getattr(core, f"weight_gates_l{k}")[:, :hidden], getattr(core, f"weight_candidate_l{k}")[:, :hidden]]
            assert getattr(core, f"bias_candidate_l{k}").abs().sum() == 0
            # The columns acting on x<t> keep their initial values.
            torch.testing.assert_close(getattr(core, f"weight_gates_l{k}")[:, hidden:], before[f"weight_gates_l{k}"][:, hidden:])
            input_weights = None
        expected = torch.zeros_like(bias)
        expected[hidden : 2 * hidden] = 1  # GRU's z (keeps the old state), the seed cell's Γf
        torch.testing.assert_close(bias.detach(), expected)
        for block in (b for w in recurrent for b in w.detach().split(hidden)):
            torch.testing.assert_close(block @ block.T, eye, atol=1e-5, rtol=0)
        if input_weights:
            torch.testing.assert_close(getattr(core, input_weights), before[input_weights])


@pytest.mark.parametrize("cell", ["lstm", "gru", "seed"])
def test_chrono_init_spreads_the_memory_gates_up_to_the_sequence_length(cell):
    from seqlstm.model import lstm_init

    hidden, memory = 64, 784
    torch.manual_seed(0)
    core = LSTMClassifier(1, hidden_size=hidden, num_layers=2, num_classes=3, cell=cell).lstm
    lstm_init(core, memory=memory)
    for k in range(2):
        prefix = "bias_ih" if cell != "seed" else "bias_gates"
        bias = getattr(core, f"{prefix}_l{k}").detach()
        # log U(1, memory - 1): a gate bias b keeps a cell's content for about e^b steps, so the
        # units' memories are spread evenly from 1 step to the whole sequence.
        steps = bias[hidden : 2 * hidden].exp()
        assert steps.min() >= 1 - 1e-4 and steps.max() <= memory - 1 + 1e-2
        assert abs(steps.mean() - memory / 2) < 120
        keep = steps.log()
        # The input gate opens as much as the memory gate closes; GRU's reset gate r is no input gate.
        torch.testing.assert_close(bias[:hidden], torch.zeros(hidden) if cell == "gru" else -keep)
        assert bias[2 * hidden :].abs().sum() == 0
    # Drawn from torch's generator: the same seed draws the same biases.
    torch.manual_seed(0)
    again = LSTMClassifier(1, hidden_size=hidden, num_layers=2, num_classes=3, cell=cell).lstm
    lstm_init(again, memory=memory)
    for (name, a), b in zip(core.named_parameters(), again.parameters()):
        assert torch.equal(a, b), name
