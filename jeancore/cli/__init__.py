"""The ``jean`` command line: every command of jeancore, in this package.

``jean [-v] COMMAND ARGS...``; ``jean COMMAND --help`` lists a command's options.

Each command is a dataclass in a module of this package (:data:`COMMANDS`): its inputs, its
output and run flags as fields, and the settings' config dataclass (e.g.
:class:`~jeancore.train.NerfTrainConfig`) nested as the field ``config``. tyro generates the
options from these fields (:mod:`._options`): one per field, nested configs as
``--<field>.<name>`` (``--adnerf.width``), the help from the field's docstring, the default
from the dataclass, so a default is written once, beside its code. A command may build its
defaults from the command line (``defaults``: ``jean train --preset NAME``) and refine a
config field's option (``refine``: choices, aliases, hidden); ``execute()`` runs it, calling
the code it drives. Only the chosen command's module is imported.

Errors in the user's input print one clear line (``jean: error: ...``) and exit with status 2;
Ctrl-C exits with status 130 (training saves its checkpoint first; preprocessing leaves every
cached step for the next run to resume from).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import JeanError

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("data:Preprocess", "turn a talking-head video into a training dataset"),
    "preprocess-mead": ("data:PreprocessMead", "preprocess MEAD frontal takes with their speech"),
    "train-audio": ("audio:TrainAudio",
                    "train the landmark autoencoder and the contrastive audio encoder"),
    "evaluate-audio": ("audio:EvaluateAudio",
                       "retrieval accuracy and swap test of an audio model"),
    "train-expression": ("expression:TrainExpression",
                         "train the expression transformer on emotion pairs"),
    "plot-expression": ("expression:PlotExpression",
                        "plots of a trained expression transformer's codes"),
    "train": ("nerf:Train", "train the audio- and expression-conditioned NeRF of one video"),
    "render": ("render:Render",
               "render a trained model from audio, expression and pose to an mp4"),
    "evaluate": ("render:Evaluate", "measure a trained model (self- and cross-driven)"),
}
"""Command name -> (``module:class`` in this package, one-line summary)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        from ._options import UsageError

        raise UsageError(f"{message} (see jean --help)")


def _top_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="jean", description="JEAN talking-face generation (jeancore). "
                     "`jean COMMAND --help` lists the options of a command.")
    parser.add_argument("--version", action="version", version=f"jeancore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def command_class(name: str) -> type:
    """The dataclass of the command ``name`` (its module is imported now)."""
    module, cls = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def parse_command(name: str, args: list[str]):
    """The command ``name`` parsed from its arguments ``args`` (an instance of its class).

    Raises:
        UsageError: arguments that do not parse.
        JeanError: defaults that cannot be built (e.g. an unknown ``--preset``).
        SystemExit: ``--help`` (status 0, after printing the help).
    """
    from ._options import parse

    cls = command_class(name)
    default = cls.defaults(args) if hasattr(cls, "defaults") else None
    return parse(cls, args, prog=f"jean {name}", default=default,
                 refine=getattr(cls, "refine", None))


def main(argv=None) -> int:
    """Runs ``jean`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # jean's own options, then the command name; the rest is the command's
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), len(argv))
    try:
        top = _top_parser().parse_args(argv[:i + 1])
        logging.basicConfig(level=logging.INFO if top.verbose else logging.WARNING,
                            format="jean: %(levelname)s: %(message)s")
        command = parse_command(top.command, argv[i + 1:])
        return command.execute()
    except JeanError as e:  # bad input, bad settings, a command line that does not parse
        print(f"jean: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jean: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
