"""MkDocs hook: the command line reference (docs/cli.md) is each command's own `--help`, rendered
from seqlstm's parser at build time, so the reference cannot drift from the flags."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

MARKER = "<!-- the commands' --help, rendered by docs_hooks.py -->"


def command_help(*argv: str) -> str:
    """What `seqlstm ARGV --help` prints, at a fixed width."""
    from seqlstm.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from seqlstm.cli import build_parser

    # argparse keeps a parser's subcommands in its one subparsers action.
    (commands,) = (action.choices for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    sections = [f"## `seqlstm`\n\n```text\n{command_help()}```\n"]
    sections += [f"## `seqlstm {name}`\n\n```text\n{command_help(name)}```\n" for name in commands]
    return markdown.replace(MARKER, "\n".join(sections))
