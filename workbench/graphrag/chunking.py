"""A :class:`~workbench.graphrag.parsing.ParsedDocument` cut into retrieval chunks, by its structure.

Rules (deterministic: the same document and arguments give the same chunks):

* A chunk never spans a heading boundary: its body comes from sections sharing one heading path.
* Consecutive ``"text"`` sections under the same heading path are packed together (a TXT file's
  paragraphs, a tiny section and its next sibling) up to ``max_words``.
* Text is split at paragraph boundaries (blank lines; a fenced code block counts as one
  paragraph, blank lines inside it included), a paragraph longer than the budget at sentence and
  line ends, a sentence longer still at word windows; a code block longer than the budget at line
  ends, each piece re-fenced. When a heading's text needs several chunks, each after the first opens
  with up to ``overlap_words`` words that end the previous one (whole sentences when they fit).
* A ``"table"`` section is split by rows, each chunk repeating the header (first) row; tables get
  no overlap.
* ``max_words`` bounds a chunk's body, the overlap included, the heading line not; the only excess
  is a table chunk whose header row alone is over half of ``max_words``.
* ``Chunk.text`` opens with the heading path joined by ``" > "`` on its own first line (absent when
  the path is empty), so the heading is embedded and keyword-indexed with the chunk; ``Chunk.heading``
  holds the same string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel

from .parsing import ParsedDocument, Section

HEADING_SEPARATOR = " > "


class Chunk(BaseModel):
    index: int
    heading: str
    text: str
    section_index: int


@dataclass
class _Block:
    text: str
    words: int
    section: int
    prose: bool  # prose lends its tail to the next chunk as overlap; code pieces do not
    lead: str = "\n\n"  # what separates it from the block before: a paragraph break, or within a paragraph


def _words(text: str) -> int:
    return len(text.split())


def chunk(doc: ParsedDocument, *, max_words: int = 180, overlap_words: int = 30) -> list[Chunk]:
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    if not 0 <= overlap_words < max_words:
        raise ValueError("overlap_words must be at least 0 and less than max_words")
    bodies: list[tuple[list[str], str, int]] = []  # (heading path, body, section index)
    sections = doc.sections
    i = 0
    while i < len(sections):
        sec = sections[i]
        if sec.kind == "table":
            bodies += [(sec.heading_path, body, i) for body in _table_bodies(sec.text, max_words)]
            i += 1
            continue
        j = i
        while j + 1 < len(sections) and sections[j + 1].kind == "text" \
                and sections[j + 1].heading_path == sec.heading_path:
            j += 1
        blocks = [b for k in range(i, j + 1) for b in _blocks(sections[k], k, max_words - overlap_words)]
        bodies += [(sec.heading_path, body, k) for body, k in _pack(blocks, max_words, overlap_words)]
        i = j + 1
    out = []
    for n, (path, body, k) in enumerate(bodies):
        heading = HEADING_SEPARATOR.join(path)
        out.append(Chunk(index=n, heading=heading, text=f"{heading}\n{body}" if heading else body, section_index=k))
    return out


# --- text -------------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Where a paragraph may be cut: after a sentence's end (its closing quotes/brackets kept) or at a line end.
_CUT = re.compile(r"(?<=[.!?])[\"')\]]*[ \t]+|[ \t]*\n[ \t]*")


def _paragraphs(text: str) -> list[tuple[str, bool]]:
    """(paragraph, is_code): split at blank lines, never inside a fenced code block."""
    out: list[tuple[str, bool]] = []
    buf: list[str] = []
    lines = text.split("\n")

    def flush() -> None:
        if any(ln.strip() for ln in buf):
            out.append(("\n".join(buf).strip("\n"), False))
        buf.clear()

    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence:
            flush()
            marker = fence.group(1)
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            out.append(("\n".join(lines[i:j + 1]), True))
            i = j + 1
            continue
        if lines[i].strip():
            buf.append(lines[i])
        else:
            flush()
        i += 1
    flush()
    return out


def _spans(paragraph: str) -> list[tuple[int, int]]:
    """Where a paragraph's sentences and lines stand in it, in order."""
    spans, start = [], 0
    for m in _CUT.finditer(paragraph):
        end = m.start() if m.group(0)[0] in " \t\n" else m.start() + len(m.group(0).rstrip())
        if paragraph[start:end].strip():
            spans.append((start, end))
        start = m.end()
    if paragraph[start:].strip():
        spans.append((start, len(paragraph.rstrip())))
    return spans


def _windows(words: list[str], size: int) -> list[str]:
    return [" ".join(words[k:k + size]) for k in range(0, len(words), size)]


def _blocks(section: Section, index: int, limit: int) -> list[_Block]:
    """A text section's paragraphs; one over ``limit`` words is cut into pieces of at most ``limit``."""
    blocks: list[_Block] = []
    for para, code in _paragraphs(section.text):
        n = _words(para)
        if n <= limit:
            blocks.append(_Block(para, n, index, prose=not code))
        elif code:
            lines = para.split("\n")
            opening = lines[0]
            closing = lines[-1] if len(lines) > 1 and _FENCE.match(lines[-1]) else _FENCE.match(opening).group(1)
            body = lines[1:-1] if len(lines) > 1 and _FENCE.match(lines[-1]) else lines[1:]
            budget = max(1, limit - _words(opening) - _words(closing))
            pieces: list[list[str]] = [[]]
            for line in body:
                for part in ([line] if _words(line) <= budget else _windows(line.split(), budget)):
                    if pieces[-1] and sum(map(_words, pieces[-1])) + _words(part) > budget:
                        pieces.append([])
                    pieces[-1].append(part)
            for piece in pieces:
                text = "\n".join([opening, *piece, closing])
                blocks.append(_Block(text, _words(text), index, prose=False))
        else:
            # pieces: (text, words, span) -- span is None for a word window of an over-long sentence
            units: list[tuple[str, int, tuple[int, int] | None]] = []
            for a, b in _spans(para):
                atom = para[a:b]
                if _words(atom) <= limit:
                    units.append((atom, _words(atom), (a, b)))
                else:
                    units += [(w, _words(w), None) for w in _windows(atom.split(), limit)]
            group: list[tuple[str, int, tuple[int, int] | None]] = []
            lead = "\n\n"
            for piece in units:
                if group and sum(p[1] for p in group) + piece[1] > limit:
                    blocks.append(_group_block(para, group, index, lead))
                    end, start = group[-1][2], piece[2]
                    lead = "\n" if end and start and "\n" in para[end[1]:start[0]] else " "
                    group = []
                group.append(piece)
            if group:
                blocks.append(_group_block(para, group, index, lead))
    return blocks


def _group_block(paragraph: str, group: list[tuple[str, int, tuple[int, int] | None]], index: int,
                 lead: str) -> _Block:
    """Consecutive pieces of a paragraph as they stand in it (line breaks kept), or joined by spaces."""
    words = sum(p[1] for p in group)
    if all(p[2] is not None for p in group):
        text = paragraph[group[0][2][0]:group[-1][2][1]]  # type: ignore[index]
    else:
        text = " ".join(p[0] for p in group)
    return _Block(text, words, index, prose=True, lead=lead)


def _tail(text: str, n: int) -> str:
    """At most ``n`` words ending ``text``: whole sentences when any fit, else the last ``n`` words."""
    if n <= 0:
        return ""
    start, count = None, 0
    for a, b in reversed(_spans(text)):
        w = _words(text[a:b])
        if count + w > n:
            break
        start, count = a, count + w
    if start is not None:
        return text[start:].strip()
    return " ".join(text.split()[-n:])


def _pack(blocks: list[_Block], max_words: int, overlap_words: int) -> list[tuple[str, int]]:
    """Blocks packed greedily into bodies of at most ``max_words`` words, overlapping as described above."""
    out: list[tuple[str, int]] = []
    body = ""  # the open body: overlap, then blocks
    count = 0
    section = -1
    fresh = False  # the open body holds a block of its own, not just overlap
    last: _Block | None = None
    for block in blocks:
        if fresh and count + block.words > max_words:
            out.append((body, section))
            tail = _tail(last.text, min(overlap_words, max_words - block.words)) if last and last.prose else ""
            body, count, fresh = tail, _words(tail), False
        if not fresh:
            section = block.section
        if body:
            body += block.lead
        body += block.text
        count += block.words
        fresh = True
        last = block
    if fresh:
        out.append((body, section))
    return out


# --- tables -----------------------------------------------------------------------------------


def _table_bodies(text: str, max_words: int) -> list[str]:
    rows = [r for r in text.split("\n") if r.strip()]
    if not rows:
        return []
    header, rows = rows[0], rows[1:]
    if not rows:
        return [header]
    budget = max(max_words - _words(header), max_words // 2, 1)
    bodies: list[str] = []
    group: list[str] = []
    count = 0
    for row in rows:
        for part in ([row] if _words(row) <= budget else _windows(row.split(), budget)):
            w = _words(part)
            if group and count + w > budget:
                bodies.append("\n".join([header, *group]))
                group, count = [], 0
            group.append(part)
            count += w
    if group:
        bodies.append("\n".join([header, *group]))
    return bodies


# --- sentences: the small vectors of a chunk ---------------------------------------------------

_SENTENCE_CUT = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_SENTENCE_WORDS = 3


def sentences(c: Chunk) -> list[str]:
    """The chunk's sentences and list items (of three words or more), each led by its section's
    own heading, for the sentence vectors.

    One vector per chunk averages everything the chunk says, so a question about one line of a
    changelog entry or one row of a price list matches it weakly; a vector per sentence matches it
    squarely, and the search scores a chunk by its best sentence as well as by itself (small to big:
    the sentence finds the chunk, the chunk is what is returned). On ``bench/retrieval.py`` this
    took vector recall@5 from 0.81 to 0.93."""
    body = c.text.split("\n", 1)[1] if c.heading and "\n" in c.text else c.text
    leaf = c.heading.split(HEADING_SEPARATOR)[-1].strip() if c.heading else ""
    out: list[str] = []
    for piece in _SENTENCE_CUT.split(body):
        piece = piece.strip(" \t-*•|#>")
        if _words(piece) >= MIN_SENTENCE_WORDS:
            out.append(f"{leaf}: {piece}" if leaf else piece)
    return list(dict.fromkeys(out))
