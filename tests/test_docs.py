"""The documentation: the site builds in MkDocs' strict mode (no broken link, no docstring the
reference cannot render) with the command line reference rendered from the parser, and every code
block of every page runs as written, in reading order, from an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


# The pages in the order of the site's navigation, README first: a reader who follows them from a
# fresh clone runs every block in this order, in one folder.
PAGES = ("README.md", "docs/index.md", "docs/own-data.md", "docs/tuning.md", "docs/data.md", "docs/gates.md",
         "docs/runs.md", "docs/commands.md", "docs/scaling.md", "docs/recipes.md", "docs/api.md")
# A block runs unless the line before its fence says why not: <!-- not run: REASON -->.
BLOCK = re.compile(r"(?ms)^(?:<!-- not run: (?P<why>[^>]*?) -->\n)?```(?P<lang>python|bash|console)\n(?P<code>.*?)^```$")


def blocks(page: str) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, why it is not run) of every python, bash and console block of `page`."""
    text = (REPO / page).read_text()
    return [(text.count("\n", 0, m.start()) + 1, m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(text)]


def commands(language: str, code: str) -> list[str]:
    """The shell commands of a bash block (each line, `\\` continuing one) or a console block (the `$`
    lines); `pip install` lines are left out: the tests run in the installed package."""
    lines = [line[2:] for line in code.splitlines() if line.startswith("$ ")] if language == "console" else [
        line for line in code.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [line for line in lines if not line.lstrip().startswith("pip install")]


@pytest.mark.e2e
@pytest.mark.slow
def test_every_code_block_of_the_docs_runs_in_reading_order(tmp_path, mnist_dir, fashion_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQLSTM_DATA", str(mnist_dir.parent))  # the reader's data folder: nothing is downloaded
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    skipped = []
    for page in PAGES:
        namespace: dict = {"__name__": "__docs__"}
        for line, language, code, why in blocks(page):
            where = f"{page}, line {line}"
            if why is not None:
                assert why.strip(), f"{where}: say why the block is not run"
                skipped.append(f"{where}: {why}")
                continue
            if language == "python":
                try:
                    exec(compile(code, where, "exec"), namespace)
                except BaseException as e:  # noqa: BLE001 - any failure of a block is the test's failure
                    pytest.fail(f"{where}: {type(e).__name__}: {e}\n{capsys.readouterr().out[-3000:]}")
                continue
            for command in commands(language, code):
                done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=900)
                assert done.returncode == 0, f"{where}: `{command}` exited {done.returncode}:\n{done.stderr[-3000:]}"
    print("not run:\n" + "\n".join(skipped))
