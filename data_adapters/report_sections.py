"""FINDINGS and IMPRESSION from free-text radiology reports.

Follows the MIMIC-CXR maintainers' section parser (mimic-cxr/txt/section_parser.py):
a section starts at a line whose first word group is upper case and ends with a
colon; the text before the first header is the preamble; header names are
normalised (``FINDINGS AND IMPRESSION`` -> impression, ``CONCLUSION`` ->
impression, ...); when a header repeats the last one wins. A report with
neither header falls back to its last paragraph, which becomes the findings
(the maintainers' ``last_paragraph`` section).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = re.compile(r"(?:^|\n)\s*([A-Z][A-Z ()/,&-]+):\s", re.MULTILINE)
_SYNONYMS: dict[str, str] = {
    "finding": "findings", "findings": "findings", "pa and lateral views of the chest": "findings",
    "findings and impression": "impression", "impression and findings": "impression",
    "impression": "impression", "impressions": "impression", "conclusion": "impression",
    "conclusions": "impression", "summary": "impression", "impression and recommendation": "impression",
    "recommendation(s)": "recommendations", "comparison": "comparison", "comparisons": "comparison",
    "indication": "indication", "history": "history", "technique": "technique", "examination": "examination",
}


@dataclass(frozen=True)
class ReportSections:
    findings: str
    impression: str


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_sections(text: str) -> dict[str, str]:
    """Normalised section name -> text (the last occurrence of a repeated header)."""
    text = text.replace("\r\n", "\n")
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer("\n" + text))
    body = "\n" + text
    if not matches:
        return {"preamble": _clean(text)}
    sections["preamble"] = _clean(body[: matches[0].start(1)])
    for m, nxt in zip(matches, matches[1:] + [None]):
        name = _SYNONYMS.get(m.group(1).strip().lower(), m.group(1).strip().lower())
        end = nxt.start(1) if nxt is not None else len(body)
        sections[name] = _clean(body[m.end():end])
    return sections


def extract_sections(text: str) -> ReportSections:
    sections = split_sections(text)
    findings, impression = sections.get("findings", ""), sections.get("impression", "")
    if not findings and not impression:
        paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
        findings = _clean(paragraphs[-1]) if paragraphs else ""
    return ReportSections(findings=findings, impression=impression)
