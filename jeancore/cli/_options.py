"""How the options of a ``jean`` command are made: tyro reads the command's dataclass (its
positional inputs, output and run flags, with the settings' config dataclass nested in it)
and generates one option per field, with the field's docstring as its help and the default
from the dataclass (or from the default instance the command builds, e.g. a preset's values).

Three things are added here on top of tyro:

* help text: each field docstring becomes one paragraph (tyro keeps the line breaks of
  indented multi-line docstrings);
* per-field refinements without touching the dataclasses (:class:`Refine`, keyed by
  ``(class, field name)``): choices from the code's own registries (``Literal``), aliases
  (``--min-negative-gap`` for ``--min-negative-gap-s``), a help text, or hiding a field the
  command sets itself;
* errors: a command line that does not parse raises :class:`UsageError` with tyro's message
  on one line, for ``jean: error: ...`` and exit status 2.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import io
import os
import re
from typing import Annotated, Any, Literal

import tyro
from tyro.constructors import ConstructorRegistry, StructConstructorSpec, StructTypeInfo

from ..errors import JeanError

__all__ = ["Refine", "UsageError", "parse", "peek"]


class UsageError(JeanError):
    """A command line that does not parse (unknown option, bad value, missing argument)."""


@dataclasses.dataclass(frozen=True)
class Refine:
    """What a command changes about one config field's option (the field keeps its name,
    type and default)."""

    choices: tuple | None = None
    """The values the option accepts (its type becomes their ``Literal``: shown in the help,
    anything else is a usage error)."""
    aliases: tuple[str, ...] = ()
    """Other flags for the option, e.g. ``("--min-negative-gap",)``."""
    help: str | None = None
    """Help text instead of the field's docstring."""
    hidden: bool = False
    """No option: the command sets the field itself."""


_inside = contextvars.ContextVar("jean_cli_rule", default=False)


_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _one_paragraph(helptext):
    """A field docstring as one plain paragraph (reST roles and literals unmarked)."""
    text = helptext() if callable(helptext) else helptext
    if text is None:
        return None
    return " ".join(_ROLE.sub(r"\1", text).replace("``", "").split())


def _registry(refine: dict) -> ConstructorRegistry:
    registry = ConstructorRegistry()

    @registry.struct_rule
    def dataclass_options(info: StructTypeInfo) -> StructConstructorSpec | None:
        if not dataclasses.is_dataclass(info.type) or _inside.get():
            return None
        token = _inside.set(True)
        try:  # tyro's own rule for the dataclass, then the refinements
            spec = ConstructorRegistry.get_struct_spec(info)
        finally:
            _inside.reset(token)
        if not isinstance(spec, StructConstructorSpec):
            return None
        fields = []
        for f in spec.fields:
            r = refine.get((info.type, f.name), Refine())
            typ = Literal[tuple(r.choices)] if r.choices is not None else f.type
            if r.aliases:
                typ = Annotated[typ, tyro.conf.arg(aliases=r.aliases)]
            if r.hidden:
                typ = tyro.conf.Suppress[typ]
            help_ = r.help if r.help is not None else (
                lambda h=f.helptext: _one_paragraph(h))
            fields.append(dataclasses.replace(f, type=typ, helptext=help_))
        return dataclasses.replace(spec, fields=tuple(fields))

    return registry


_BOX = "│╭╮╰╯─"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(box: str) -> str:
    """tyro's error box -> its message on one line (the part above the first rule)."""
    lines = []
    for line in _ANSI.sub("", box).splitlines():
        text = line.strip().strip(_BOX).strip()
        if line.strip().startswith(("╭", "╰")):
            continue
        if text and set(text) <= set(_BOX):
            break
        lines.append(text)
    return " ".join(" ".join(lines).split()) or "invalid command line"


def _description(command: type) -> str:
    """The command's docstring wrapped to the help's width. tyro prints a description as it
    is but joins its lines unless one starts with a space: hence the indent."""
    import inspect
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size().columns, 80)  # as tyro's boxes
    return textwrap.fill(" ".join(inspect.getdoc(command).split()), width,
                         initial_indent="  ", subsequent_indent="  ")


def parse(command: type, args: list[str], *, prog: str, default: Any = None,
          refine: dict | None = None):
    """``command`` (a dataclass) from the command line ``args``.

    ``default``: an instance of ``command`` whose values are the defaults (fields without one
    may be ``tyro.MISSING``); None: the dataclass defaults. ``refine``: ``{(class, field):
    Refine}``. ``--help`` prints the help and raises ``SystemExit(0)``.

    Raises:
        UsageError: the arguments do not parse.
    """
    kwargs = {"description": _description(command)}
    if default is not None:
        kwargs["default"] = default
    err = io.StringIO()
    columns = os.environ.get("COLUMNS")
    try:
        with contextlib.redirect_stderr(err):
            if not {"-h", "--help"} & set(args):
                # an error's message on one line: let tyro lay it out without wrapping
                os.environ["COLUMNS"] = "100000"
            parsed = tyro.cli(command, prog=prog, args=args, registry=_registry(refine or {}),
                              config=(tyro.conf.FlagCreatePairsOff,), **kwargs)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UsageError(f"{_one_line(err.getvalue())} (see {prog} --help)") from None
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    # tyro lets a list of positional arguments be empty; a required one must not be
    for f in dataclasses.fields(command):
        if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and getattr(parsed, f.name) == ()):
            raise UsageError(f"{f.name}: give at least one (see {prog} --help)")
    return parsed


def peek(args: list[str], **flags) -> dict:
    """The values of a few options before the whole command line is parsed (those that
    choose the defaults of the others, e.g. ``--preset``): ``flags`` maps a field name to its
    type; absent options are None."""
    import argparse

    class Peek(argparse.ArgumentParser):
        def error(self, message):  # left to the full parse to report
            raise argparse.ArgumentError(None, message)

    p = Peek(add_help=False, allow_abbrev=False)
    for name, typ in flags.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None)
    try:
        return vars(p.parse_known_args(args)[0])
    except argparse.ArgumentError:
        return dict.fromkeys(flags)
