"""``--config FILE`` for the argparse commands (``explain``): a YAML mapping of the command's long options, read
before the command line, which then overrides it.

Keys are option names without the dashes, with ``-`` or ``_`` (``n_std: 2`` or ``n-std: 2``); values are what the
option takes: a string or number, a list for an option of several values (``methods: [dtd, gradcam]``,
``clip_shape: [16, 112, 112]``), true / false for a switch (``quiet: true``; ``realtime: false``). Each key becomes
the tokens the command line would have, so a config is checked exactly as the command line is.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigFileError", "add_config_option", "expand_config"]


class ConfigFileError(ValueError):
    """A ``--config`` file that cannot be read, or that names an option or value the command does not take."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` on ``parser`` (for ``--help``; :func:`expand_config` reads it)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of options (keys are the long options: n_std: 2, methods: [dtd, gradcam], quiet: true); "
        "the command line overrides it",
    )


def expand_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config FILE`` taken out and the tokens its options stand for put first, so that the
    command line overrides the file (a later file overrides an earlier one).

    Raises:
        ConfigFileError: Naming the file and the key or value, and the fix.
    """
    out: list[str] = []
    from_files: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--config" or token.startswith("--config="):
            if token == "--config":
                if i + 1 >= len(tokens):
                    raise ConfigFileError("--config needs a file")
                path, i = tokens[i + 1], i + 2
            else:
                path, i = token.split("=", 1)[1], i + 1
            from_files += _tokens(parser, Path(path))
            continue
        out.append(token)
        i += 1
    return [*from_files, *out]


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigFileError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"--config {path} is not YAML ({' '.join(str(error).split())[:160]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"--config {path} holds a {type(data).__name__}, not a mapping of options (n_std: 2, methods: [dtd])"
        )
    return data


def _tokens(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    options = {
        option[2:]: action
        for action in parser._actions  # argparse has no public list of a parser's actions
        for option in action.option_strings
        if option.startswith("--")
    }
    out: list[str] = []
    for key, value in _read(path).items():
        name = str(key).replace("_", "-")
        action = options.get(name)
        if action is None or name in ("config", "help"):
            near = difflib.get_close_matches(name, [o for o in options if o not in ("config", "help")], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigFileError(f"--config {path}: {key!r} is not an option of this command{hint}")
        out += _option_tokens(path, key, f"--{name}", action, value)
    return out


def _option_tokens(path: Path, key: Any, flag: str, action: argparse.Action, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ConfigFileError(f"--config {path}: {key} must be true or false, got {value!r}")
        return [flag if value else f"--no-{flag[2:]}"]
    if action.nargs == 0:  # store_true and the like
        if not isinstance(value, bool):
            raise ConfigFileError(f"--config {path}: {key} is a switch: true or false, got {value!r}")
        return [flag] if value else []
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, (dict, list)) for v in values):
        raise ConfigFileError(f"--config {path}: {key} takes plain values, got {value!r}")
    if isinstance(action, argparse._AppendAction):  # a repeatable option: once per value
        return [token for v in values for token in (flag, str(v))]
    return [flag, *(str(v) for v in values)]
