"""Help that helps: defaults and examples in every `--help`, `--version`, and the docs' commands are real."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from edgeq import __version__
from edgeq.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "deploy.md"]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _parse(arguments: list[str]) -> str:
    """'' when the real parser accepts the arguments, else its error message."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(arguments)
    except SystemExit as stop:
        return errors.getvalue() or f"exit {stop.code}"
    return ""


def commands_in(text: str) -> list[str]:
    """The `edgeq ...` command lines of the fenced code blocks (continuations joined)."""
    found: list[str] = []
    blocks: list[str] = []
    lines: list[str] = []
    fence = ""  # shell blocks only: a ```python block's quotes are not shell's
    for line in text.splitlines():
        if line.startswith("```"):
            if fence and fence in ("bash", "sh", "console", "shell"):
                blocks.append("\n".join(lines))
            fence, lines = ("" if fence else line[3:].strip() or "sh"), []
        elif fence:
            lines.append(line)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            starts = [i for i, word in enumerate(words) if Path(word).name == "edgeq"]
            for start in starts:
                command = []
                for word in words[start + 1:]:
                    if word in ("&&", "||", "|", ";"):
                        break
                    command.append(word)
                found.append(shlex.join(command))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_edgeq_command_in_the_docs_parses(doc: Path) -> None:
    commands = commands_in(doc.read_text())
    assert len(commands) >= 5, commands
    problems = {command: _parse(shlex.split(command)) for command in commands}
    assert {c: p for c, p in problems.items() if p} == {}


def test_the_docs_command_finder_sees_a_bad_command() -> None:
    assert commands_in("```bash\nedgeq jobs --nope   # comment\n```\n") == ["jobs --nope"]
    assert "unrecognized arguments: --nope" in _parse(["jobs", "--nope"])


def test_every_option_has_help_with_its_default_and_every_command_an_example() -> None:
    for name, parser in _subcommands().items():
        text = parser.format_help()
        assert re.search(rf"examples:\n  edgeq {name}\b", text), name
        for example in re.findall(r"^  (edgeq .*?)(?:\s+#.*)?$", text.split("examples:")[1], re.M):
            assert _parse(shlex.split(example)[1:]) == "", example
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"edgeq {name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False, "", argparse.SUPPRESS):
                shown = parser._get_formatter()._expand_help(action)  # type: ignore[attr-defined]
                assert "default" in shown.lower() and str(action.default).split("/")[-1] in shown, (name, shown)


def test_version_and_jobs_without_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"edgeq {__version__}"
    assert build_parser().parse_args(["jobs"]).action == "list"
