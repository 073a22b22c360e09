"""Predictions on real MNIST digits turned into photos, through the API and real CLI processes."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from seqlstm import ConfigError, load_checkpoint, load_dataset, predict
from seqlstm.prediction import prepare_file

PHOTOS = 1000


def as_photo(digit: np.ndarray, rng: np.random.Generator, path) -> None:
    """Save a 28x28 MNIST digit as a user's photo of it would look: black ink on slightly grainy
    white paper, enlarged to about 300 px, off centre with a margin, as a JPEG."""
    side = int(rng.integers(260, 340))
    ink = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    width, height = side + int(rng.integers(60, 240)), side + int(rng.integers(60, 240))
    paper = np.clip(rng.normal(235, 6, size=(height, width)), 0, 255).astype(np.uint8)
    left, top = int(rng.integers(10, width - side - 10)), int(rng.integers(10, height - side - 10))
    under = paper[top : top + side, left : left + side]
    paper[top : top + side, left : left + side] = np.minimum(under, np.asarray(ink))
    Image.fromarray(paper).save(path, quality=85)


@pytest.fixture(scope="session")
def test_digits(mnist_dir):
    return load_dataset("mnist", "test", mnist_dir)


@pytest.mark.slow
@pytest.mark.accuracy
def test_photos_of_digits_get_the_predictions_of_the_originals(trained_checkpoint, test_digits, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(test_digits.images), PHOTOS, replace=False)
    prepared = []
    for index in chosen:
        path = tmp_path / f"{index}.jpg"
        as_photo(test_digits.images[index].numpy(), rng, path)
        prepared.append(prepare_file(path))
    from_photos = [top[0].label for top in predict(model, np.stack(prepared))]
    from_originals = [top[0].label for top in predict(model, test_digits.images[chosen])]
    agreement = np.mean([a == b for a, b in zip(from_photos, from_originals)])
    print(f"agreement between photos and original 28x28 digits: {agreement:.1%} of {PHOTOS}")
    assert agreement >= 0.97


@pytest.mark.slow
def test_predict_api_returns_sorted_top_k_with_names(trained_checkpoint, test_digits):
    model, _ = load_checkpoint(trained_checkpoint)
    images, labels = test_digits.images[:50], test_digits.labels[:50]
    tops = predict(model, images, top_k=4, classes=list("abcdefghij"))
    assert len(tops) == 50 and all(len(top) == 4 for top in tops)
    for top in tops:
        probabilities = [guess.probability for guess in top]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert sum(top[0].label == "abcdefghij"[int(y)] for top, y in zip(tops, labels)) >= 45
    # More classes than there are: all of them, which then sum to one.
    everything = predict(model, images[:1].numpy(), top_k=99)[0]
    assert sorted(g.label for g in everything) == [str(d) for d in range(10)]
    assert sum(g.probability for g in everything) == pytest.approx(1, abs=1e-5)
    assert predict(model, images[:0]) == []


@pytest.mark.parametrize(
    "images, top_k, message",
    [
        (np.zeros((2, 28, 28), np.float32), 3, "uint8 images of shape (N, 28, 28); got torch.float32"),
        (np.zeros((28, 28), np.uint8), 3, "got torch.uint8 (28, 28)"),
        (np.zeros((2, 28, 28), np.uint8), 0, "top_k must be a positive integer"),
    ],
)
def test_predict_api_rejects_bad_arguments(image_checkpoint, images, top_k, message):
    model, _ = load_checkpoint(image_checkpoint)
    with pytest.raises(ConfigError) as raised:
        predict(model, images, top_k=top_k)
    assert message in str(raised.value)


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_json_reports_each_file_and_fails_when_one_did(trained_checkpoint, test_digits, tmp_path):
    model, _ = load_checkpoint(trained_checkpoint)
    rng = np.random.default_rng(1)
    good = []
    for index in (0, 1, 2):
        path = tmp_path / f"digit{index}.jpg"
        as_photo(test_digits.images[index].numpy(), rng, path)
        good.append(path)
    (tmp_path / "blank.png").write_bytes(b"")  # empty: not an image
    Image.new("L", (50, 50), 255).save(tmp_path / "white.png")
    files = [good[0], tmp_path / "blank.png", good[1], tmp_path / "white.png", good[2]]

    done = run_cli(
        "predict", str(trained_checkpoint), *map(str, files), "--json", "--top-k", "2",
        "--save-preprocessed", str(tmp_path / "seen"), "--device", "cpu",
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "seqlstm: error: 2 of 5 files could not be predicted"
    answer = json.loads(done.stdout)
    assert [entry["file"] for entry in answer] == list(map(str, files))
    assert "not an image Pillow can read" in answer[1]["error"] and "no ink found" in answer[3]["error"]
    expected = predict(model, np.stack([prepare_file(p) for p in good]), top_k=2)
    for entry, top in zip([answer[0], answer[2], answer[4]], expected):
        assert set(entry) == {"file", "top"}
        assert [g["label"] for g in entry["top"]] == [g.label for g in top]
        assert [g["probability"] for g in entry["top"]] == pytest.approx([g.probability for g in top], abs=1e-5)
    # The images the model saw, for the files it could read.
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["digit0.png", "digit1.png", "digit2.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "seen" / "digit1.png")), prepare_file(good[1]))


def test_cli_table_for_mnist_like_files_without_preprocessing(image_checkpoint, test_digits, tmp_path, cli):
    model, _ = load_checkpoint(image_checkpoint)
    files = []
    for index in range(4):
        path = tmp_path / f"mnist{index}.png"
        Image.fromarray(test_digits.images[index].numpy()).save(path)
        files.append(str(path))
    np.save(tmp_path / "mnist4.npy", test_digits.images[4].numpy())
    files.append(str(tmp_path / "mnist4.npy"))

    done = cli("predict", str(image_checkpoint), *files, "--no-preprocess", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 * 4  # per file: its name, then 3 guesses
    expected = predict(model, test_digits.images[:5])
    for number, (file, top) in enumerate(zip(files, expected)):
        block = lines[4 * number : 4 * number + 4]
        assert block[0] == file
        assert [line.split() for line in block[1:]] == [[g.label, f"{100 * g.probability:.2f}", "%"] for g in top]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "auto"])
def test_cli_predicts_the_same_with_onnxruntime(image_checkpoint, test_digits, tmp_path, cli, runtime):
    pytest.importorskip("onnxruntime")
    files = []
    for index in range(3):
        np.save(tmp_path / f"digit{index}.npy", test_digits.images[index].numpy())
        files.append(str(tmp_path / f"digit{index}.npy"))
    with_torch = cli("predict", str(image_checkpoint), *files, "--json", "--device", "cpu")
    done = cli("predict", str(image_checkpoint), *files, "--json", "--device", "cpu", "--runtime", runtime)
    assert done.returncode == 0, done.stderr
    expected, got = json.loads(with_torch.stdout), json.loads(done.stdout)
    assert [[g["label"] for g in r["top"]] for r in got] == [[g["label"] for g in r["top"]] for r in expected]
    assert all(g["probability"] == pytest.approx(e["probability"], abs=1e-5)
               for r, q in zip(got, expected) for g, e in zip(r["top"], q["top"]))
