#!/usr/bin/env python3
"""Regenerates the sample PDFs in sample_docs/ from scripts/pdf_sources/*.txt.

The PDFs are committed artifacts: kb's demo and tests read them, and nothing runs this script
automatically. Run it only after editing a source text.

Setup (once, outside the repository):
    python3 -m venv /tmp/pdfenv && /tmp/pdfenv/bin/pip install reportlab
Run from the repository root:
    /tmp/pdfenv/bin/python scripts/make_sample_pdfs.py

Source format (a small markdown subset): "# " title, "## " heading, "- " bullet,
"1. " numbered item, blank-line separated paragraphs, and a line "<<<PAGEBREAK>>>" that forces
a new page (so each PDF has several pages whose content the tests can name).

Output is byte-for-byte reproducible (reportlab's invariant mode fixes dates and ids), so
regenerating an unchanged source leaves git clean.
"""

import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab import rl_config

rl_config.invariant = 1  # must be set before documents are built: no timestamps or random ids

from reportlab.lib.enums import TA_LEFT  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet  # noqa: E402
from reportlab.lib.units import cm  # noqa: E402
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "scripts" / "pdf_sources"
OUT = ROOT / "sample_docs"
PAGE_BREAK = "<<<PAGEBREAK>>>"
NUMBERED = re.compile(r"^(\d+)\.\s+(.*)$")


def styles():
    base = getSampleStyleSheet()
    body = ParagraphStyle(
        "Body", parent=base["BodyText"], fontName="Helvetica", fontSize=11, leading=15,
        alignment=TA_LEFT, spaceAfter=7,
    )
    return {
        "title": ParagraphStyle("Title", parent=base["Title"], fontName="Helvetica-Bold",
                                fontSize=20, leading=24, spaceAfter=14),
        "heading": ParagraphStyle("Heading", parent=base["Heading2"], fontName="Helvetica-Bold",
                                  fontSize=14, leading=18, spaceBefore=10, spaceAfter=6,
                                  keepWithNext=1),  # never strand a heading at a page foot
        "body": body,
        "item": ParagraphStyle("Item", parent=body, leftIndent=18, bulletIndent=6, spaceAfter=3),
    }


def flowables(text, st):
    """Turns one source text into reportlab flowables, paragraph by paragraph."""
    story = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if lines == [PAGE_BREAK]:
            story.append(PageBreak())
            continue
        for line in merge_wrapped(lines):
            if line.startswith("# "):
                story.append(Paragraph(escape(line[2:]), st["title"]))
            elif line.startswith("## "):
                story.append(Paragraph(escape(line[3:]), st["heading"]))
            elif line.startswith("- "):
                story.append(Paragraph(escape(line[2:]), st["item"], bulletText="\u2022"))
            elif NUMBERED.match(line):
                number, rest = NUMBERED.match(line).groups()
                story.append(Paragraph(escape(rest), st["item"], bulletText=f"{number}."))
            else:
                story.append(Paragraph(escape(line), st["body"]))
    return story


def merge_wrapped(lines):
    """Joins continuation lines of a paragraph; headings and list items start new lines."""
    merged = []
    for line in lines:
        starts_new = line.startswith(("#", "- ")) or NUMBERED.match(line) or not merged
        if starts_new:
            merged.append(line)
        else:
            merged[-1] += " " + line
    return merged


def build(source, st):
    text = source.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip()
    target = OUT / (source.stem + ".pdf")
    doc = SimpleDocTemplate(
        str(target), pagesize=A4, title=title, author="Northwind Studio",
        leftMargin=2.2 * cm, rightMargin=2.2 * cm, topMargin=2 * cm, bottomMargin=2 * cm,
    )
    doc.build(flowables(text, st))
    pages = doc.page
    if pages < 2:
        sys.exit(f"{target.name}: only {pages} page(s); the tests need multi-page PDFs")
    print(f"{target.relative_to(ROOT)}: {pages} pages")


def main():
    st = styles()
    sources = sorted(SOURCES.glob("*.txt"))
    if not sources:
        sys.exit(f"no sources in {SOURCES}")
    for source in sources:
        build(source, st)


if __name__ == "__main__":
    main()
