"""The documentation site builds in MkDocs' strict mode (no broken link, no docstring the reference
cannot render), with the command line reference rendered from the parser."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from seqlstm.cli import FLAGS


@pytest.mark.e2e
def test_the_site_builds_strictly_with_every_command_and_flag(tmp_path):
    pytest.importorskip("mkdocs", reason='the site needs pip install ".[docs]"')
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    reference = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in ("train", "evaluate", "plot", "explain", "predict", "export", "serve"):
        assert f"usage: seqlstm {command} [-h]" in reference, command
    for f in FLAGS:
        assert f"--{f.name.replace('_', '-')}" in reference, f.name
    python = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("seqlstm.training.loop.train", "seqlstm.training.recorders.Recorder", "seqlstm.estimator.SequenceClassifier"):
        assert f'id="{name}"' in python, name
