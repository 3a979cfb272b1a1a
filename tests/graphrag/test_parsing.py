"""``parse(filename, data)``: what an upload reads as, and how each bad upload is refused.

The format comes from the bytes, checked against the name. Markdown headings (ATX and setext) make
each section's heading path; code fences stay whole; pipe tables and DOCX tables become ``"table"``
sections of ``a | b | c`` rows, header first. A PDF gives one section per page. Anything else is an
``UnsupportedType`` (415) and anything broken a ``BadDocument`` (400), both naming the field
``"file"`` -- never a library's own exception.
"""

from __future__ import annotations

import io
import random
import re
import zipfile
from pathlib import Path

import pytest

from workbench.errors import BadDocument, UnsupportedType, WorkbenchError
from workbench.graphrag import parsing
from workbench.graphrag.parsing import ParsedDocument, Section, parse

KB = Path(__file__).resolve().parents[1] / "data" / "knowledge-base.md"  # a copy of ../shared/seeds/knowledge-base.md

# The seed's own price list as a pipe table, for the table cases (the seed itself has none).
PRICE_TABLE = """| Model | Input | Output |
|:------|------:|-------:|
| GPT o3-Pro | $20.00 | $80.00 |
| GPT-5 Pro | $15.00 | $120.00 |
| GPT-5 | $1.25 | $10.00 |
| GPT-5 Mini | $0.25 | $2.00 |
| Claude Sonnet 4.5 | $3.00 | $15.00 |
| Claude 3 Haiku | $0.25 | $1.25 |
"""
PRICE_HEADING = "### Price Comparison (Input / Output per 1M tokens)"


def kb_text() -> str:
    return KB.read_text(encoding="utf-8")


def kb_with_table() -> str:
    text = kb_text()
    assert PRICE_HEADING in text
    return text.replace(PRICE_HEADING + "\n", PRICE_HEADING + "\n\n" + PRICE_TABLE + "\n", 1)


def source_headings(markdown: str) -> list[str]:
    """The ``#`` headings of a Markdown text outside code fences, in order (an independent, plain scan)."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6} (.+?)\s*$", line)):
            out.append(m.group(1))
    return out


def make_pdf(pages: list[str], *, title: str | None = None, user_password: str | None = None,
             owner_password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    if owner_password:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    d = docx.Document()
    d.core_properties.title = ""
    d.add_heading("Fleet Handbook", level=0)  # the Title style
    d.add_paragraph("This handbook describes the fleet.")
    d.add_heading("Vehicles", level=1)
    d.add_paragraph("Every vehicle is listed below with its depot.")
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate([("Name", "Kind", "Depot"), ("Rover-7", "truck", "North"), ("Skiff-2", "boat", "Harbor")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("The table is reviewed monthly.")
    d.add_heading("Maintenance", level=2)
    d.add_paragraph("Oil is changed every 90 days.", style="List Bullet")
    d.add_heading("Staff", level=1)
    d.add_paragraph("Drivers hold a class C licence.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def refused(filename: str, data: bytes) -> WorkbenchError:
    with pytest.raises(WorkbenchError) as info:
        parse(filename, data)
    assert type(info.value) in (BadDocument, UnsupportedType)
    assert info.value.field == "file"
    return info.value


# --- Markdown: the knowledge base ------------------------------------------------------------


def test_the_knowledge_base_headings_come_through_in_order_as_heading_paths() -> None:
    text = kb_text()
    doc = parse("knowledge-base.md", text.encode())
    assert doc.format == "md" and doc.pages is None
    assert doc.title == "Fine-Tune Lab Complete Knowledge Base for Graph RAG"
    seen: list[str] = []
    for s in doc.sections:
        for h in s.heading_path:
            if h not in seen:
                seen.append(h)
    expected = list(dict.fromkeys(source_headings(text)))
    assert seen == expected
    paths = [s.heading_path for s in doc.sections]
    assert ["AI Models Knowledge Base for Fine-Tune Lab", "OpenAI Models", "GPT o3-Pro"] in paths
    assert ["AI Models Knowledge Base for Fine-Tune Lab", "Anthropic Models", "Claude 3 Haiku"] in paths
    assert ["Quick Start Guide", "2. Start a Training Job"] in paths
    assert ["Troubleshooting", "FAQ"] in paths
    assert all(s.kind == "text" for s in doc.sections)  # the seed has no pipe table


def test_a_code_block_in_the_knowledge_base_stays_in_one_section_blank_lines_and_all() -> None:
    doc = parse("knowledge-base.md", kb_text().encode())
    (section,) = [s for s in doc.sections if s.heading_path == ["Quick Start Guide", "1. List Available Models"]]
    fence = section.text[section.text.index("```json"):]
    assert fence.rstrip().endswith("```") and '"name": "LLaMA 3 8B",\n\n' in fence


def test_a_pipe_table_under_a_heading_is_a_table_section_that_keeps_its_header_row() -> None:
    doc = parse("kb.md", kb_with_table().encode())
    tables = [s for s in doc.sections if s.kind == "table"]
    assert len(tables) == 1
    (table,) = tables
    assert table.heading_path == ["AI Models Knowledge Base for Fine-Tune Lab", "Model Comparison Tables",
                                  "Price Comparison (Input / Output per 1M tokens)"]
    rows = table.text.split("\n")
    assert rows[0] == "Model | Input | Output"
    assert rows[1] == "GPT o3-Pro | $20.00 | $80.00"  # the |---| delimiter row is dropped
    assert len(rows) == 7
    i = doc.sections.index(table)  # the text after the table, same heading, comes after it
    assert doc.sections[i + 1].heading_path == table.heading_path
    assert doc.sections[i + 1].text.startswith("**OpenAI Models:**")


def test_a_hash_inside_a_code_fence_is_not_a_heading_and_setext_headings_are() -> None:
    md = ("Guide\n=====\n\nIntro text.\n\nSetup\n-----\n\n```bash\n# install it\npip install x\n\n# run it\n"
          "x --go\n```\n\n~~~\n## still code\n~~~\n\n#hashtag is text\n\n### Deep ###\n\nDeep text.\n")
    doc = parse("g.markdown", md.encode())
    assert [s.heading_path for s in doc.sections] == [["Guide"], ["Guide", "Setup"], ["Guide", "Setup", "Deep"]]
    setup = doc.sections[1].text
    assert "# install it\npip install x\n\n# run it" in setup and "## still code" in setup
    assert "#hashtag is text" in setup
    assert doc.title == "Guide"


def test_a_thematic_break_after_a_blank_line_is_not_a_heading_and_front_matter_is_metadata() -> None:
    md = "---\ntitle: Release notes\ntags: [a]\n---\n\nFirst paragraph.\n\n---\n\nSecond paragraph.\n"
    doc = parse("notes.md", md.encode())
    assert doc.title == "Release notes"
    assert [s.heading_path for s in doc.sections] == [[]]
    assert "First paragraph." in doc.sections[0].text and "Second paragraph." in doc.sections[0].text
    assert "tags" not in doc.sections[0].text


def test_a_heading_resets_deeper_levels_of_the_path() -> None:
    md = "# A\n\na\n\n### A3\n\na3\n\n## B\n\nb\n\n# C\n\nc\n"
    doc = parse("x.md", md.encode())
    assert [s.heading_path for s in doc.sections] == [["A"], ["A", "A3"], ["A", "B"], ["C"]]


# --- TXT ------------------------------------------------------------------------------------


def test_a_text_file_is_paragraphs_with_no_heading_path_bom_and_crlf_gone() -> None:
    data = "\ufeffFirst paragraph,\r\nstill first.\r\n\r\n\r\nSecond one.\r\n".encode()
    doc = parse("notes.txt", data)
    assert doc == ParsedDocument(format="txt", sections=[
        Section(heading_path=[], text="First paragraph,\nstill first.", kind="text"),
        Section(heading_path=[], text="Second one.", kind="text")], pages=None, title=None)


def test_a_text_file_that_is_not_utf8_is_a_bad_document() -> None:
    err = refused("latin1.txt", "Café crème".encode("latin-1"))
    assert isinstance(err, BadDocument) and err.http_status == 400
    assert "UTF-8" in err.message


@pytest.mark.parametrize("name,data", [("empty.txt", b""), ("blank.md", b" \n\t\n  "), ("bom.txt", b"\xef\xbb\xbf\n"),
                                       ("empty.pdf", b""), ("empty.docx", b"   "),
                                       ("only-headings.md", b"# A\n\n## B\n")])
def test_an_empty_or_whitespace_file_is_a_bad_document(name: str, data: bytes) -> None:
    assert isinstance(refused(name, data), BadDocument)


# --- DOCX -----------------------------------------------------------------------------------


def test_a_docx_gives_headings_paragraphs_and_tables_in_document_order() -> None:
    doc = parse("handbook.docx", make_docx())
    assert doc.format == "docx" and doc.title == "Fleet Handbook" and doc.pages is None
    got = [(s.heading_path, s.kind, s.text) for s in doc.sections]
    assert got == [
        (["Fleet Handbook"], "text", "This handbook describes the fleet."),
        (["Fleet Handbook", "Vehicles"], "text", "Every vehicle is listed below with its depot."),
        (["Fleet Handbook", "Vehicles"], "table",
         "Name | Kind | Depot\nRover-7 | truck | North\nSkiff-2 | boat | Harbor"),
        (["Fleet Handbook", "Vehicles"], "text", "The table is reviewed monthly."),
        (["Fleet Handbook", "Vehicles", "Maintenance"], "text", "- Oil is changed every 90 days."),
        (["Fleet Handbook", "Staff"], "text", "Drivers hold a class C licence."),
    ]


def test_a_truncated_docx_is_a_bad_document() -> None:
    data = make_docx()
    for cut in (len(data) // 3, len(data) - 30):
        assert isinstance(refused("handbook.docx", data[:cut]), BadDocument)


def test_a_zip_named_docx_without_word_document_xml_is_an_unsupported_type() -> None:
    """A well-formed ZIP that is not a Word package is another kind of file (an archive, an .xlsx
    renamed), not a damaged DOCX: 415, so the user is told to upload a different file, not to repair it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    err = refused("report.docx", buf.getvalue())
    assert isinstance(err, UnsupportedType) and err.http_status == 415
    assert "word/document.xml" in err.message


def test_a_docx_whose_document_xml_is_broken_is_a_bad_document() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(make_docx())) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            dst.writestr(item, body[: len(body) // 2] if item.filename == "word/document.xml" else body)
    assert isinstance(refused("handbook.docx", buf.getvalue()), BadDocument)


# --- PDF ------------------------------------------------------------------------------------


def test_a_two_page_pdf_is_one_section_per_page_with_its_page_count_and_title() -> None:
    data = make_pdf(["Launch checklist. Fuel the rover before dawn.", "Return checklist. Park the rover at North."],
                    title="Rover checklists")
    doc = parse("checklists.pdf", data)
    assert doc.format == "pdf" and doc.pages == 2 and doc.title == "Rover checklists"
    assert [s.heading_path for s in doc.sections] == [["Page 1"], ["Page 2"]]
    assert "Fuel the rover before dawn." in doc.sections[0].text
    assert "Park the rover at North." in doc.sections[1].text


def test_a_blank_page_is_skipped_but_counted() -> None:
    doc = parse("gap.pdf", make_pdf(["Before the gap.", "", "After the gap."]))
    assert doc.pages == 3 and [s.heading_path for s in doc.sections] == [["Page 1"], ["Page 3"]]


def test_a_pdf_without_any_text_is_a_bad_document() -> None:
    err = refused("scan.pdf", make_pdf(["", ""]))
    assert isinstance(err, BadDocument) and "no extractable text" in err.message


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.97])
def test_a_truncated_pdf_is_a_bad_document(fraction: float) -> None:
    data = make_pdf(["Page one text.", "Page two text."])
    assert isinstance(refused("cut.pdf", data[: int(len(data) * fraction)]), BadDocument)


def test_a_pdf_header_followed_by_garbage_is_a_bad_document() -> None:
    assert isinstance(refused("junk.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"), BadDocument)


def test_a_password_protected_pdf_is_a_bad_document_but_an_owner_only_one_reads() -> None:
    locked = make_pdf(["Secret plans."], owner_password="owner", user_password="user")
    err = refused("locked.pdf", locked)
    assert isinstance(err, BadDocument) and "password" in err.message
    # Restricted (owner password only): every reader opens it with the empty user password.
    doc = parse("restricted.pdf", make_pdf(["Open plans."], owner_password="owner"))
    assert "Open plans." in doc.sections[0].text


def test_the_work_is_bounded_pages_and_extracted_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "MAX_PDF_PAGES", 1)
    assert "at most 1" in refused("two.pdf", make_pdf(["a page.", "another page."])).message
    monkeypatch.setattr(parsing, "MAX_TEXT_CHARS", 100)
    for name, data in [("big.md", b"word " * 30), ("big.txt", b"word " * 30), ("big.docx", make_docx()),
                       ("big.pdf", make_pdf(["word " * 30]))]:
        err = refused(name, data)
        assert isinstance(err, BadDocument), name
        assert "split it" in err.message or "at most" in err.message, (name, err.message)


# --- what is not accepted -------------------------------------------------------------------


def test_an_exe_is_an_unsupported_type_naming_the_field_and_what_is_accepted() -> None:
    err = refused("x.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff")
    assert isinstance(err, UnsupportedType) and err.http_status == 415 and err.field == "file"
    assert "Windows executable" in err.message
    for accepted in (".pdf", ".docx", ".txt", ".md"):
        assert accepted in err.message
    assert err.to_dict()["details"]["accepted"] == [".docx", ".markdown", ".md", ".pdf", ".txt"]


def test_a_png_is_an_unsupported_type_whatever_it_is_named() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
    for name in ("photo.png", "photo.txt", "photo.pdf", "photo"):
        err = refused(name, png)
        assert isinstance(err, UnsupportedType), name
        assert "PNG" in err.message


@pytest.mark.parametrize("name", ["data.csv", "page.html", "archive.tar.gz", "legacy.doc", "slides.pptx"])
def test_other_extensions_are_unsupported_types(name: str) -> None:
    assert isinstance(refused(name, b"plain words"), UnsupportedType)


def test_content_that_contradicts_the_extension_is_a_bad_document() -> None:
    pdf = make_pdf(["A real PDF."])
    err = refused("report.docx", pdf)
    assert isinstance(err, BadDocument) and "rename it to .pdf" in err.message
    assert isinstance(refused("notes.txt", pdf), BadDocument)
    assert isinstance(refused("report.pdf", make_docx()), BadDocument)
    assert isinstance(refused("report.pdf", b"just some text"), BadDocument)
    assert isinstance(refused("report.docx", b"just some text"), BadDocument)


def test_a_markdown_file_that_mentions_the_pdf_header_is_still_markdown() -> None:
    doc = parse("pdf-notes.md", b"# PDF notes\n\nEvery PDF starts with %PDF-1.7 and ends with %%EOF.\n")
    assert doc.format == "md" and doc.sections[0].heading_path == ["PDF notes"]


def test_a_file_without_an_extension_is_read_by_its_content() -> None:
    assert parse("README", b"Plain words here.").format == "txt"
    assert parse("scan", make_pdf(["A PDF without a name."])).format == "pdf"
    assert parse("C:\\Users\\me\\handbook", make_docx()).format == "docx"


def test_damaged_files_raise_only_domain_errors() -> None:
    """Random bytes and byte-flipped real files either read or are refused as BadDocument/UnsupportedType."""
    rng = random.Random(7)
    samples = {"pdf": make_pdf(["Page one text.", "Page two text."]), "docx": make_docx(),
               "md": kb_text().encode()[:3000]}
    for _ in range(12):
        for ext, good in samples.items():
            data = bytearray(good)
            for _ in range(8):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                parse(f"f.{ext}", bytes(data))
            except (BadDocument, UnsupportedType):
                pass
        try:
            parse(f"r.{rng.choice(['pdf', 'docx', 'txt', 'md'])}", rng.randbytes(rng.randrange(1, 400)))
        except (BadDocument, UnsupportedType):
            pass
