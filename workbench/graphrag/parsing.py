"""Uploaded documents (PDF, DOCX, TXT, Markdown) read into heading-scoped sections.

``parse(filename, data)`` decides the format from the bytes (``%PDF-``; a ZIP holding
``word/document.xml``), checks it against the file's extension, and returns a
:class:`ParsedDocument`: an ordered list of :class:`Section` s, each with the path of headings
above it and its kind (prose ``"text"`` or a ``"table"`` rendered as ``a | b | c`` rows, the first
row the header). :mod:`workbench.graphrag.chunking` cuts those sections into chunks.

Every failure is a domain error naming the field ``"file"``: :class:`~workbench.errors.UnsupportedType`
(415) for a kind the workbench does not read, :class:`~workbench.errors.BadDocument` (400) for one it
reads but cannot read *this* copy of (corrupt, truncated, encrypted, mislabelled, no text, too big).

pypdf and python-docx are imported only when a PDF or DOCX is parsed.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Literal

from pydantic import BaseModel, Field

from workbench.errors import BadDocument, UnsupportedType, WorkbenchError

Format = Literal["pdf", "docx", "txt", "md"]

MAX_PDF_PAGES = 2_000
MAX_TEXT_CHARS = 50_000_000  # extracted text, all sections together (~50 MB)
MAX_DOCX_UNPACKED = 256 * 1024 * 1024  # sum of a DOCX's uncompressed parts: refuses zip bombs

EXTENSIONS: dict[str, Format] = {".pdf": "pdf", ".docx": "docx", ".txt": "txt", ".md": "md", ".markdown": "md"}
ACCEPTED = "PDF (.pdf), Word (.docx), plain text (.txt) or Markdown (.md, .markdown)"

# Strong signatures of kinds we do not read, so the error can say what the file is.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office (.doc/.xls) or password-protected Office file"),
    (b"{\\rtf", "an RTF document"),
)
_WEAK_SIGNATURES: tuple[tuple[bytes, str], ...] = ((b"MZ", "a Windows executable"),)


class Section(BaseModel):
    heading_path: list[str] = Field(default_factory=list)
    text: str
    kind: Literal["text", "table"] = "text"


class ParsedDocument(BaseModel):
    format: Format
    sections: list[Section]
    pages: int | None = None
    title: str | None = None


def parse(filename: str, data: bytes) -> ParsedDocument:
    """Read an upload into sections; raises ``UnsupportedType`` or ``BadDocument``, never anything else."""
    name = re.split(r"[\\/]", filename or "")[-1]
    ext = ("." + name.rsplit(".", 1)[1].lower()) if "." in name.strip(".") else ""
    fmt = _detect(name, ext, data)
    try:
        if fmt == "pdf":
            doc = _parse_pdf(data)
        elif fmt == "docx":
            doc = _parse_docx(data)
        else:
            doc = _parse_text(data, fmt)
    except WorkbenchError:
        raise
    except Exception as exc:  # a parser library's own error on a malformed file, whatever its type
        raise BadDocument(f"{name or 'the file'} could not be read as {fmt.upper()}: {exc or type(exc).__name__}",
                          field="file") from exc
    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise BadDocument(f"{name or 'the file'} has no extractable text"
                          + (" (a scanned PDF needs OCR, which is not supported)" if fmt == "pdf" else ""),
                          field="file")
    if sum(len(s.text) for s in doc.sections) > MAX_TEXT_CHARS:
        raise _too_much_text(name)
    return doc


# --- format detection -------------------------------------------------------------------------


def _unsupported(name: str, what: str) -> UnsupportedType:
    return UnsupportedType(f"{name or 'the file'} is {what}; only {ACCEPTED} files are accepted",
                           field="file", details={"accepted": sorted(EXTENSIONS)})


def _bad(name: str, message: str) -> BadDocument:
    return BadDocument(f"{name or 'the file'} {message}", field="file")


def _too_much_text(name: str) -> BadDocument:
    return _bad(name, f"has more than {MAX_TEXT_CHARS // 1_000_000} MB of text; split it into smaller files")


def _sniff(data: bytes) -> str | None:
    """``"pdf"``, ``"zip"``, a description of a known unsupported kind, or None (text or unknown)."""
    if data.lstrip(b"\x00\t\n\r\x0c ").startswith(b"%PDF-"):
        return "pdf"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return what
    return None


def _detect(name: str, ext: str, data: bytes) -> Format:
    claimed = EXTENSIONS.get(ext)
    if ext and claimed is None:
        what = _sniff(data)
        if what in (None, "pdf", "zip"):
            what = next((w for m, w in _WEAK_SIGNATURES if data.startswith(m)), None) or f"a {ext} file"
        raise _unsupported(name, what)
    if not data.strip():
        raise _bad(name, "is empty")
    kind = _sniff(data)
    if kind == "zip":
        kind = _zip_kind(name, data, claimed)
    if kind in ("pdf", "docx"):
        if claimed in (None, kind):
            return kind  # type: ignore[return-value]
        raise _bad(name, f"is named {ext} but its content is a {kind.upper()}; rename it to .{kind}")
    if kind is not None:  # a known kind we do not read
        if claimed == "docx" and kind.startswith("a legacy Office"):
            raise _bad(name, "is not a readable DOCX: it is password-protected or a legacy .doc renamed;"
                             " remove the password or save it as .docx")
        raise _unsupported(name, kind)
    if claimed in ("pdf", "docx"):
        raise _bad(name, f"is not a valid {claimed.upper()}: "
                         + ("it lacks the %PDF- header" if claimed == "pdf" else "it is not a ZIP package"))
    return claimed or "txt"


def _zip_kind(name: str, data: bytes, claimed: Format | None) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            unpacked = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _bad(name, f"is a damaged ZIP package{' (DOCX)' if claimed == 'docx' else ''}: {exc}") from exc
    if "word/document.xml" in names:
        if unpacked > MAX_DOCX_UNPACKED:
            raise _bad(name, f"unpacks to more than {MAX_DOCX_UNPACKED >> 20} MB")
        return "docx"
    if "xl/workbook.xml" in names:
        return "an Excel workbook"
    if "ppt/presentation.xml" in names:
        return "a PowerPoint presentation"
    return "a ZIP archive that is not a Word document (it has no word/document.xml)"


# --- text and Markdown ------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if len(data) > MAX_TEXT_CHARS:
        raise _too_much_text("")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadDocument(f"the file is not UTF-8 text (invalid byte at position {exc.start});"
                          " save it as UTF-8 and upload it again", field="file") from exc
    if "\x00" in text:
        raise BadDocument("the file contains NUL bytes: it is binary, not text", field="file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_text(data: bytes, fmt: Format) -> ParsedDocument:
    text = _decode(data)
    if fmt == "md":
        sections, title = parse_markdown(text)
        return ParsedDocument(format="md", sections=sections, title=title)
    paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text)]
    return ParsedDocument(format="txt", sections=[Section(text=p) for p in paragraphs if p.strip()])


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BLOCK_START = re.compile(r"^ {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|#{1,6}(?:[ \t]|$)|\|)")
_DELIM_CELL = re.compile(r"^[ \t]*:?-+:?[ \t]*$")


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)]


def _is_delimiter(line: str) -> bool:
    return "-" in line and ("|" in line or line.strip().startswith(":")) and all(
        _DELIM_CELL.match(c) for c in _cells(line))


def parse_markdown(text: str) -> tuple[list[Section], str | None]:
    """Sections of a Markdown text (ATX and setext headings, fenced code kept whole, pipe tables apart)."""
    lines = text.split("\n")
    title: str | None = None
    # YAML front matter: metadata, not content (and its closing --- would read as a setext underline).
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, min(len(lines), 200)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            m = next((re.match(r"^title:\s*(.+?)\s*$", ln) for ln in lines[1:end] if ln.startswith("title:")), None)
            if m:
                title = m.group(1).strip("'\"") or None
            lines = lines[end + 1:]

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []  # (level, heading)
    buf: list[str] = []
    para: list[int] = []  # indices in buf of the open paragraph's plain lines (setext candidates)

    def path() -> list[str]:
        return [h for _, h in stack]

    def flush() -> None:
        body = "\n".join(buf).strip("\n")
        if body.strip():
            sections.append(Section(heading_path=path(), text=body, kind="text"))
        buf.clear()
        para.clear()

    def heading(level: int, head: str) -> None:
        nonlocal title
        flush()
        head = " ".join(head.split())
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, head))
        if title is None and level == 1 and head:
            title = head

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            buf.extend(lines[i:j + 1])  # an unclosed fence runs to the end of the text
            para.clear()
            i = j + 1
            continue
        atx = _ATX.match(line)
        if atx:
            heading(len(atx.group(1)), atx.group(2) or "")
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and para:
            head = " ".join(buf[k].strip() for k in para)
            del buf[para[0]:]
            heading(1 if setext.group(1)[0] == "=" else 2, head)
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _is_delimiter(lines[i + 1]) \
                and len(_cells(line)) == len(_cells(lines[i + 1])):
            flush()
            rows = [line]
            j = i + 2
            while j < len(lines) and lines[j].strip() and "|" in lines[j]:
                rows.append(lines[j])
                j += 1
            rendered = "\n".join(" | ".join(_cells(r)) for r in rows)
            sections.append(Section(heading_path=path(), text=rendered, kind="table"))
            i = j
            continue
        if not line.strip():
            para.clear()
            buf.append(line)
        elif _BREAK.match(line):
            para.clear()  # a thematic break: no words, ends the paragraph
            buf.append("")
        else:
            if _BLOCK_START.match(line) or line.startswith(("    ", "\t")):
                para.clear()
            else:
                para.append(len(buf))
            buf.append(line)
        i += 1
    flush()
    return sections, title


# --- DOCX -------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def _parse_docx(data: bytes) -> ParsedDocument:
    import docx  # python-docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buf: list[str] = []
    total = 0
    first_title: str | None = None

    def flush() -> None:
        if buf:
            sections.append(Section(heading_path=[h for _, h in stack], text="\n\n".join(buf), kind="text"))
            buf.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rendered = _render_table(block)
            if rendered:
                flush()
                sections.append(Section(heading_path=[h for _, h in stack], text=rendered, kind="table"))
                total += len(rendered)
        else:
            text = " ".join(block.text.split()) if block.text else ""
            if not text:
                continue
            style = (block.style.name if block.style is not None else "") or ""
            level = 0 if style.lower() == "title" else None
            m = _HEADING_STYLE.match(style.strip())
            if m:
                level = int(m.group(1))
            if level is not None:
                flush()
                if level == 0 and first_title is None:
                    first_title = text
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, text))
            else:
                buf.append(("- " + text) if style.lower().startswith("list") else text)
            total += len(text)
        if total > MAX_TEXT_CHARS:
            raise _too_much_text("")
    flush()
    title = (document.core_properties.title or "").strip() or first_title
    return ParsedDocument(format="docx", sections=sections, title=title)


def _render_table(table) -> str:  # a docx.table.Table
    rows: list[str] = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell repeats across the span
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --- PDF --------------------------------------------------------------------------------------


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PasswordType, PdfReader

    if b"%%EOF" not in data[-1024:]:
        raise BadDocument("the PDF is truncated (no %%EOF marker at its end); upload it again", field="file")
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise BadDocument("the PDF is password-protected; remove the password and upload it again", field="file")
    pages = len(reader.pages)
    if pages == 0:
        raise BadDocument("the PDF has no pages", field="file")
    if pages > MAX_PDF_PAGES:
        raise BadDocument(f"the PDF has {pages} pages; at most {MAX_PDF_PAGES} are read", field="file")
    sections: list[Section] = []
    total = 0
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text() or ""
        text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        total += len(text)
        if total > MAX_TEXT_CHARS:
            raise _too_much_text("")
        if text:
            sections.append(Section(heading_path=[f"Page {number}"], text=text, kind="text"))
    title = None
    try:
        title = ((reader.metadata.title if reader.metadata else None) or "").strip() or None
    except Exception:  # noqa: BLE001 - a broken info dictionary costs only the title
        title = None
    return ParsedDocument(format="pdf", sections=sections, pages=pages, title=title)
