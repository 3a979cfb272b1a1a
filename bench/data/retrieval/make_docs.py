"""Regenerate the retrieval benchmark's binary documents from their source texts.

    python bench/data/retrieval/make_docs.py

* ``sources/ops-handbook.md``      -> ``ops-handbook.pdf``       (fpdf2, core fonts, ASCII only)
* ``sources/pricing-and-plans.md`` -> ``pricing-and-plans.docx`` (python-docx, Heading 1-3 styles,
  "List Bullet" paragraphs, real tables)

The sources use a small subset of Markdown: ``#``/``##``/``###`` headings, paragraphs (one or more
lines), ``- `` bullets and pipe tables. No inline markup, so the text of a generated file is the
source text less the heading marks, the bullet dashes and the table pipes — which the benchmark's
matching ignores (see ``bench/retrieval.py``). ``platform-changelog.md`` is uploaded as it is and
``knowledge-base.md`` is read from ``shared/seeds``; neither is generated here.

Both outputs carry fixed dates (the DOCX's zip entries too), so unchanged sources give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
FIXED_DATE = dt.datetime(2025, 11, 20, 9, 0, 0, tzinfo=dt.UTC)


@dataclass
class Block:
    kind: str  # "heading", "para", "bullet", "table"
    text: str = ""
    level: int = 0
    rows: list[list[str]] = field(default_factory=list)


def parse(source: str) -> list[Block]:
    """The blocks of a source text, in order."""
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block("para", " ".join(para)))
            para.clear()

    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif line.startswith("#"):
            flush()
            marks, _, text = line.partition(" ")
            blocks.append(Block("heading", text.strip(), level=len(marks)))
        elif line.startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-", ":"} for c in cells):
                continue  # the header separator
            if not blocks or blocks[-1].kind != "table":
                blocks.append(Block("table"))
            blocks[-1].rows.append(cells)
        elif line.startswith("- "):
            flush()
            blocks.append(Block("bullet", line[2:].strip()))
        else:
            para.append(line)
    flush()
    return blocks


def _ascii(text: str, where: str) -> str:
    bad = sorted({ch for ch in text if ord(ch) > 126})
    if bad:
        raise SystemExit(f"{where}: non-ASCII characters {bad!r} (the PDF uses core fonts)")
    return text


def make_pdf(source: Path, out: Path) -> None:
    from fpdf import FPDF

    blocks = parse(_ascii(source.read_text(), source.name))
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(blocks[0].text if blocks and blocks[0].kind == "heading" else source.stem)
    pdf.set_author("Fine-Tune Lab Platform Reliability")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    sizes = {1: 18, 2: 14, 3: 12}
    for block in blocks:
        if block.kind == "heading":
            pdf.ln(3)
            pdf.set_font("Helvetica", "B", sizes.get(block.level, 11))
            pdf.multi_cell(0, 8, block.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif block.kind == "para":
            pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(0, 5, block.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif block.kind == "bullet":
            pdf.set_font("Helvetica", "", 10)
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(0, 5, "- " + block.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif block.kind == "table":
            pdf.set_font("Helvetica", "", 8)
            with pdf.table(first_row_as_headings=True, line_height=4.5, padding=1.5) as table:
                for cells in block.rows:
                    row = table.row()
                    for cell in cells:
                        row.cell(cell)
            pdf.ln(3)
    pdf.output(str(out))


def make_docx(source: Path, out: Path) -> None:
    import docx

    blocks = parse(source.read_text())
    document = docx.Document()
    props = document.core_properties
    props.title = blocks[0].text if blocks and blocks[0].kind == "heading" else source.stem
    props.author = "Fine-Tune Lab Billing"
    props.created = props.modified = FIXED_DATE.replace(tzinfo=None)
    props.revision = 1
    for block in blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=min(block.level, 3))  # style "Heading N"
        elif block.kind == "para":
            document.add_paragraph(block.text)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "table":
            table = document.add_table(rows=len(block.rows), cols=len(block.rows[0]))
            table.style = "Table Grid"
            for r, cells in enumerate(block.rows):
                for c, cell in enumerate(cells):
                    table.cell(r, c).text = cell
                    if r == 0:
                        for run in table.cell(r, c).paragraphs[0].runs:
                            run.bold = True
    buffer = io.BytesIO()
    document.save(buffer)
    _fixed_zip_times(buffer.getvalue(), out)


def _fixed_zip_times(data: bytes, out: Path) -> None:
    """The DOCX (a zip) rewritten with every entry stamped ``FIXED_DATE``: the same bytes on every run."""
    stamp = FIXED_DATE.timetuple()[:6]
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=stamp)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, src.read(info.filename))


def main() -> None:
    make_pdf(SOURCES / "ops-handbook.md", HERE / "ops-handbook.pdf")
    make_docx(SOURCES / "pricing-and-plans.md", HERE / "pricing-and-plans.docx")
    for name in ("ops-handbook.pdf", "pricing-and-plans.docx"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
