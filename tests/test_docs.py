"""The documentation site: it builds in strict mode, and its reference is generated from the code."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from fedtar.cli import build_parser
from fedtar.config import RULES, FedTARConfig
from fedtar.docs_reference import (
    _commands,
    cli_commands,
    cli_reference_markdown,
    config_keys,
    config_reference_markdown,
    field_comments,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_key_and_rule_is_in_the_reference():
    table = config_reference_markdown()
    keys = set(FedTARConfig().to_flat())
    assert {row["key"] for row in config_keys()} == keys
    for key in keys:
        assert f"| `{key}` |" in table, key
    for key, rule in RULES.items():
        assert key in keys, f"RULES names {key}, which is no config key"
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` |"))
        if rule.choices:
            assert all(f"`{choice}`" in row for choice in rule.choices if choice), (key, row)
        else:
            default = FedTARConfig().to_flat()[key]
            assert rule.allowed("an integer" if type(default) is int else "a number") in row, (key, row)
    # the comments beside the fields in the source come along
    assert "the paper's default (model and adapters)" in table
    assert field_comments(FedTARConfig().federation.__class__)["robust"].startswith("none | median")


def test_every_cli_command_and_option_is_in_the_reference():
    text = cli_reference_markdown()
    commands = cli_commands()
    assert {"fedtar simulate", "fedtar prepare mimic-cxr", "fedtar experiment compare", "fedtar node"} <= set(commands)
    for command, _, parser in _commands(build_parser(), "fedtar"):
        assert f"### `{command}`" in text
        section = text.split(f"### `{command}`", 1)[1].split("\n### ", 1)[0]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert f"`{name}`" in section, (command, name)


def test_docs_build_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a missing page or a page left out of the nav fails."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    config_page = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert all(key in config_page for key in FedTARConfig().to_flat())
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert all(command in cli_page for command in cli_commands())
    assert "<!-- fedtar:" not in config_page + cli_page


def test_every_config_file_in_the_docs_is_valid(tmp_path):
    """The FedTAR config files the guides show (TOML blocks of dotted keys, e.g. mimic.toml, ct.toml,
    real-base.toml) load and pass validation; role files with tables (server.toml, node.toml) are not
    FedTAR configs and are left to their own tests."""
    import re

    from fedtar.config import load_config

    checked = 0
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M):
            if re.search(r"^\s*\[", block, flags=re.M):
                continue
            path = tmp_path / f"{page.stem}-{checked}.toml"
            path.write_text(block, encoding="utf-8")
            load_config(path)  # raises, naming the file and the key, on an unknown key or a value out of range
            checked += 1
    assert checked >= 3
