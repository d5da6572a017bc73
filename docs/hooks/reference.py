"""MkDocs hook: the generated parts of the documentation, made at build time so they cannot drift.

- `<!-- fedtar:config-keys -->`, `<!-- fedtar:presets -->` and `<!-- fedtar:cli -->` in a page are
  replaced by the tables `fedtar.docs_reference` builds from the config dataclasses, `RULES`, the
  presets and the `fedtar` argument parsers.
- The committed results (`experiments/results/<sweep>/results.md` and its plots) are added to the
  site under the same paths, so docs/results.md links them as the README did.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

from fedtar.docs_reference import cli_reference_markdown, config_reference_markdown, presets_markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ("experiments/results/synthetic", "experiments/results/fta", "experiments/results/fta2")
MARKERS = {
    "<!-- fedtar:config-keys -->": config_reference_markdown,
    "<!-- fedtar:presets -->": presets_markdown,
    "<!-- fedtar:cli -->": cli_reference_markdown,
}


def on_files(files, config):
    for folder in RESULTS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".md", ".png"):
                uri = path.relative_to(ROOT).as_posix()
                if files.get_file_from_path(uri) is None:
                    files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
