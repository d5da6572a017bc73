"""The reference pages of the documentation, generated from the code so they cannot drift.

`config_reference_markdown()` lists every config key (the dataclasses of `fedtar.config.FedTARConfig`)
with its type, default, what `fedtar.config.RULES` allows and the comment beside the field in the
source; `presets_markdown()` the command and named presets; `cli_reference_markdown()` every `fedtar`
command and option from the argument parsers (`fedtar.cli.build_parser`). The MkDocs hook
`docs/hooks/reference.py` puts them into the reference pages at build time.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import io
import re
import tokenize
import typing
from typing import Any

from fedtar.config import PRESETS, RULES, SYNTHETIC_PRESET, FedTARConfig


def _cell(text: Any) -> str:
    """A value as one markdown table cell (pipes escaped, no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _code(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (tuple, list)):
        text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
    elif isinstance(value, str):
        text = f'"{value}"'
    else:
        text = repr(value)
    return "`" + text.replace("|", "\\|") + "`"


def field_comments(cls: type) -> dict[str, str]:
    """The comments written beside each field of a dataclass in its source: the comment on the
    field's line, comment-only lines indented under it (continuations), and a block comment
    directly above a field (it describes that field and the ones that follow it)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    field_line = re.compile(r"^(\s*)(\w+)\s*:")
    block: list[str] = []
    consumed: set[int] = set()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        m = field_line.match(line)
        if number in consumed:
            continue
        if m and m.group(2) in names:
            indent = len(m.group(1))
            parts = ([" ".join(block)] if block else []) + ([comments[number]] if number in comments else [])
            block = []
            follow = number + 1  # continuation comments: comment-only lines indented deeper than the field
            while follow <= len(lines) and lines[follow - 1].strip().startswith("#") \
                    and len(lines[follow - 1]) - len(lines[follow - 1].lstrip()) > indent:
                parts.append(comments.get(follow, ""))
                consumed.add(follow)
                follow += 1
            out[m.group(2)] = " ".join(p for p in parts if p)
        elif stripped.startswith("#") and number in comments:
            block.append(comments[number])  # a block comment: it describes the field below it
        else:
            block = []
    return out


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return "list of " + _type_name(typing.get_args(annotation)[0])
    return getattr(annotation, "__name__", str(annotation))


def _allowed(key: str, annotation: Any, default: Any) -> str:
    rule = RULES.get(key)
    if rule is not None and rule.choices:
        text = "one of " + ", ".join(f"`{c}`" if c else '`""` (empty)' for c in rule.choices)
        text += "".join(f" (or `{p}...`)" for p in rule.prefix_ok)
        return ("each item " + text) if typing.get_origin(annotation) is tuple else text
    if rule is not None:
        text = rule.allowed("an integer" if type(default) is int else "a number")
        return ("each item " + text) if typing.get_origin(annotation) is tuple else text
    if annotation is bool:
        return "true or false"
    if typing.get_origin(annotation) is tuple:
        return "a list"
    return {"str": "a string", "int": "an integer", "float": "a number"}.get(_type_name(annotation), "any")


def config_keys() -> list[dict[str, Any]]:
    """Every config key, in the dataclasses' order: key, section, type, default, allowed, description."""
    defaults = FedTARConfig()
    rows = []
    for section in dataclasses.fields(FedTARConfig):
        cls = type(getattr(defaults, section.name))
        hints = typing.get_type_hints(cls)
        notes = field_comments(cls)
        for f in dataclasses.fields(cls):
            key = f"{section.name}.{f.name}"
            default = getattr(getattr(defaults, section.name), f.name)
            rows.append({"key": key, "section": section.name, "type": _type_name(hints[f.name]),
                         "default": default, "allowed": _allowed(key, hints[f.name], default),
                         "description": notes.get(f.name, "")})
    return rows


def config_reference_markdown() -> str:
    """One table per config section: key, type, default, what is allowed, the source's comment."""
    out, section = [], None
    for row in config_keys():
        if row["section"] != section:
            section = row["section"]
            cls = type(getattr(FedTARConfig(), section))
            out += ["", f"### `{section}`", "",
                    f"Defined by `{cls.__module__}.{cls.__name__}`.", "",
                    "| key | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
        out.append(f"| `{row['key']}` | {row['type']} | {_code(row['default'])} | {_cell(row['allowed'])} "
                   f"| {_cell(row['description'])} |")
    return "\n".join(out).strip() + "\n"


def presets_markdown() -> str:
    """The synthetic preset (`fedtar demo`, `simulate`, `pretrain`) and every named preset, key by key."""
    out = ["| preset | key | value |", "| --- | --- | --- |"]
    named = [("synthetic (`demo`, `simulate`, `pretrain`)", SYNTHETIC_PRESET),
             *((f"`--preset {name}`", values) for name, values in sorted(PRESETS.items()))]
    for label, values in named:
        for key, value in values.items():
            out.append(f"| {label} | `{key}` | {_code(value)} |")
    return "\n".join(out) + "\n"


def _option_default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.required:
        return "required"
    if action.default is None or action.default == argparse.SUPPRESS:
        return ""
    return _code(action.default)


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    value = ""
    if action.nargs != 0:
        metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
        value = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else str(metavar)
        value = f"`{value}`"
    repeat = " (repeatable)" if isinstance(action, argparse._AppendAction) else ""
    return (f"| {names} | {value} | {_option_default(action)} "
            f"| {_cell((action.help or '') % {'default': action.default} if action.help else '')}{repeat} |")


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(command, help, parser) for every leaf command under parser, depth first."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                out += nested or [(f"{prefix} {name}", helps.get(name, ""), sub)]
    return out


def cli_reference_markdown() -> str:
    """Every `fedtar` command with its options (from fedtar.cli.build_parser)."""
    from fedtar.cli import build_parser

    parser = build_parser()
    out = ["### `fedtar` (every command)", "", "| option | value | default | what it does |",
           "| --- | --- | --- | --- |"]
    out += [_option_row(a) for a in parser._actions
            if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    for command, help_text, sub in _commands(parser, "fedtar"):
        sub.formatter_class = functools.partial(argparse.HelpFormatter, width=100)  # not the terminal's width
        sentence = _cell(help_text) + ("." if help_text and not help_text.endswith(".") else "")
        out += ["", f"### `{command}`", "", sentence,
                "", "```text", sub.format_usage().strip().replace("usage: ", ""), "```", "",
                "| option | value | default | what it does |", "| --- | --- | --- | --- |"]
        out += [_option_row(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
    return "\n".join(out) + "\n"


def cli_commands() -> list[str]:
    """Every leaf command, e.g. ['fedtar synth', ..., 'fedtar prepare mimic-cxr', ...]."""
    from fedtar.cli import build_parser

    return [name for name, _, _ in _commands(build_parser(), "fedtar")]
