"""How `edgeq ... --help` reads: every option says its default, every command shows an example."""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends "(default: X)" where a help text does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default in (None, False, "", argparse.SUPPRESS) or "default" in text.lower()
                or not action.option_strings and action.nargs not in ("?", "*")):
            return text
        return f"{text} (default: %(default)s)"


def add_command(commands: Any, name: str, help_text: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand with its help, the shared formatter and its examples as the epilog."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return commands.add_parser(name, help=help_text, description=help_text, epilog=epilog,  # type: ignore[no-any-return]
                               formatter_class=HelpFormatter)


def existing_or_new_folder(text: str) -> str:
    """argparse type for --store: a folder or a path that does not exist yet, never a file."""
    from pathlib import Path

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a store folder")
    return text
