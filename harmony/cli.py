"""Shared pieces of the command line (``python -m harmony ...`` / ``harmony ...``).

Every subcommand's parser is a :class:`Parser`: its help shows each option's
default. (``harmony.__main__.main`` turns usage errors into one line.)
"""
from __future__ import annotations

import argparse
import os
import sys


def program() -> str:
    """How the user called us: ``harmony`` (the console entry) or ``python -m harmony``."""
    return "harmony" if os.path.basename(sys.argv[0] or "") == "harmony" else "python -m harmony"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and epilogs as written; ``(default: ...)`` after every option's help,
    except where the default is None, "" or a flag's False (the help text says what happens then)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

