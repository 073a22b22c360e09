"""The training recipes: `tutorial` is the tutorial's loop exactly; `fast` adds measured levers."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import REPO
from seqlstm import ConfigError, Recorder, TrainConfig, train
from seqlstm.data import load_dataset
from seqlstm.device import cpu_has_bf16, resolve_precision
from seqlstm.model import LSTMClassifier, lstm_init


def test_recipes_fill_only_what_is_not_set():
    fast = TrainConfig()
    assert (fast.precision, fast.schedule, fast.clip_grad, fast.init, fast.augment_shift) == (
        "auto", "onecycle", 1.0, "lstm", 1)
    tutorial = TrainConfig(recipe="tutorial")
    assert (tutorial.precision, tutorial.schedule, tutorial.clip_grad, tutorial.init, tutorial.augment_shift) == (
        "fp32", "constant", 0.0, "default", 0)
    mixed = TrainConfig(recipe="tutorial", schedule="onecycle", clip_grad=2.5)
    assert (mixed.precision, mixed.schedule, mixed.clip_grad) == ("fp32", "onecycle", 2.5)
    # A stored config round-trips unchanged: resolved values are kept, not re-derived.
    assert TrainConfig.from_dict(mixed.to_dict()) == mixed


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(recipe="turbo"), "unknown recipe 'turbo'"),
        (dict(precision="fp16"), "precision must be one of auto, fp32, bf16"),
        (dict(schedule="cosine"), "schedule must be one of onecycle, constant"),
        (dict(clip_grad=-1.0), "clip_grad must be >= 0"),
        (dict(init="xavier"), "init must be one of lstm, chrono, default"),
        (dict(label_smoothing=1.0), r"label_smoothing must be from 0 \(none\) to below 1, got 1.0"),
        (dict(lr=0.0), "lr must be positive, got 0.0"),
        (dict(weight_decay=-0.1), r"weight_decay must be >= 0 \(0: none\), got -0.1"),
        (dict(augment_shift=-1), "augment_shift must be an integer >= 0"),
    ],
)
def test_bad_recipe_options(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_precision_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if cpu_has_bf16() else None)


def test_lstm_init_opens_the_forget_gate_and_makes_recurrent_blocks_orthogonal():
    model = LSTMClassifier(28, hidden_size=16, num_layers=2)
    lstm_init(model.lstm)
    for layer in range(2):
        bias = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        assert bias[16:32].tolist() == [1.0] * 16
        assert bias[:16].abs().sum() == 0 and bias[32:].abs().sum() == 0
        for gate in getattr(model.lstm, f"weight_hh_l{layer}").detach().split(16):
            torch.testing.assert_close(gate @ gate.T, torch.eye(16), atol=1e-5, rtol=0)


class Tutorial(nn.Module):
    """The tutorial's model class, written independently of seqlstm's."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, 2, batch_first=True)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        h0 = torch.zeros(2, x.size(0), 128)
        c0 = torch.zeros(2, x.size(0), 128)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


@pytest.mark.slow
@pytest.mark.parametrize("label_smoothing, weight_decay", [(None, None), (0.2, 0.05)])
def test_tutorial_recipe_is_the_tutorial_loop_exactly(tmp_path, mnist_dir, label_smoothing, weight_decay):
    """And --label-smoothing and --weight-decay change only the loss and the optimizer, to PyTorch's
    smoothed cross-entropy and AdamW."""
    steps, seed = 12, 5
    result = train(TrainConfig(recipe="tutorial", data_dir=str(mnist_dir), max_steps=steps, log_every=1, seed=seed,
                               label_smoothing=label_smoothing, weight_decay=weight_decay,
                               out=str(tmp_path / "m.ckpt"), run_dir=str(tmp_path / "run")),
                   log=lambda line: None)

    images, labels = load_dataset("mnist", "train", mnist_dir)
    torch.manual_seed(seed)
    model = Tutorial()
    if weight_decay:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing or 0.0)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    losses = []
    for batch in order.split(100)[:steps]:
        loss = criterion(model(images[batch].float() / 255), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert result.losses == losses
    ours = result.model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(ours[name], value), name


@pytest.mark.parametrize("precision, computed_in", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_compute_dtype_and_master_weights_stay_float32(tmp_path, mnist_dir, precision, computed_in):
    outputs = set()

    class Watch(Recorder):
        def after_step(self, trainer, step):
            if step.step == 1:  # the hook sees the forward passes of steps 2 and 3, and the evaluation
                trainer.model.fc.register_forward_hook(lambda module, args, out: outputs.add(out.dtype))

    result = train(TrainConfig(precision=precision, data_dir=str(mnist_dir), max_steps=3, out=str(tmp_path / "m.ckpt"),
                               run_dir=str(tmp_path / "run")),
                   log=lambda line: None, recorders=[Watch()])
    assert outputs == {computed_in}
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}


@pytest.mark.e2e
@pytest.mark.slow
def test_benchmark_quick_mode_runs_every_path(tmp_path, mnist_dir):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_speed.py"), "--quick",
         "--data-dir", str(mnist_dir), "--device", "cpu", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    sides = [run["side"] for run in report["runs"]]
    assert sides == ["reference", "seqlstm"]
    for run in report["runs"]:
        assert run["steps"] == 8 and run["samples_per_s"] > 0 and 0 <= run["final_accuracy"] <= 100
        assert run["inference"]["batch1_latency_ms"] > 0
    assert report["train_flops_per_sample"] == pytest.approx(35.4e6, rel=0.01)
    assert set(report["ratios_seqlstm_over_reference"]) >= {"throughput", "batch1_latency"}
    assert "ratios seqlstm/reference: throughput" in done.stdout
