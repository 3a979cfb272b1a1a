"""``chunk(doc)``: retrieval chunks cut along the document's structure.

A chunk never spans a heading boundary; its text opens with the heading path (``A > B > C``) on
its first line and ``heading`` holds that string; its body is at most ``max_words`` words. Long
text is cut at paragraphs, then sentences, with ``overlap_words`` of overlap; tables are cut by
rows, the header row repeated; small same-heading sections pack together; the output is
deterministic and loses no word of the source.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from workbench.graphrag.chunking import Chunk, chunk
from workbench.graphrag.parsing import ParsedDocument, Section, parse

from .test_parsing import kb_text, kb_with_table, make_docx

SIZES = [(180, 30), (60, 15), (25, 5)]


def words(text: str) -> Counter:
    return Counter(re.findall(r"[A-Za-z0-9]+", text))


def body(c: Chunk) -> str:
    if not c.heading:
        return c.text
    first, _, rest = c.text.partition("\n")
    assert first == c.heading
    return rest


def norm(text: str) -> str:
    """Whitespace collapsed, fence lines dropped (a code block cut in pieces is re-fenced per piece)."""
    return " ".join(" ".join(ln for ln in text.split("\n") if not re.match(r"^\s*(```|~~~)", ln)).split())


def same_heading_run(doc: ParsedDocument, i: int) -> str:
    """The text of the run of consecutive text sections sharing section ``i``'s heading path."""
    path = doc.sections[i].heading_path
    lo = i
    while lo > 0 and doc.sections[lo - 1].kind == "text" and doc.sections[lo - 1].heading_path == path:
        lo -= 1
    hi = i
    while hi + 1 < len(doc.sections) and doc.sections[hi + 1].kind == "text" \
            and doc.sections[hi + 1].heading_path == path:
        hi += 1
    return "\n\n".join(s.text for s in doc.sections[lo:hi + 1])


def check_invariants(doc: ParsedDocument, chunks: list[Chunk], max_words: int, source: str) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.section_index for c in chunks] == sorted(c.section_index for c in chunks)
    for c in chunks:
        section = doc.sections[c.section_index]
        assert c.heading == " > ".join(section.heading_path)
        b = body(c)
        assert b.strip()
        if section.kind == "text":
            assert len(b.split()) <= max_words, c
            # Never across a heading: the body is a stretch of this heading's own text.
            assert norm(b) in norm(same_heading_run(doc, c.section_index)), c
        else:
            rows = section.text.split("\n")
            assert b.split("\n")[0] == rows[0]
            assert all(r in rows for r in b.split("\n"))
    # No word of the source is lost (heading words travel in the heading line).
    assert not words(source) - words("\n".join(c.text for c in chunks))


# --- the knowledge base ---------------------------------------------------------------------


@pytest.mark.parametrize("max_words,overlap", SIZES)
def test_the_knowledge_base_chunks_keep_headings_bounds_and_every_word(max_words: int, overlap: int) -> None:
    source = kb_text()
    doc = parse("knowledge-base.md", source.encode())
    chunks = chunk(doc, max_words=max_words, overlap_words=overlap)
    check_invariants(doc, chunks, max_words, source)
    assert chunk(doc, max_words=max_words, overlap_words=overlap) == chunks  # deterministic


def test_a_knowledge_base_chunk_carries_its_heading_path_on_its_first_line() -> None:
    chunks = chunk(parse("knowledge-base.md", kb_text().encode()))
    (c,) = [c for c in chunks if "gpt-5-mini" in c.text and "Model ID" in c.text]
    assert c.heading == "AI Models Knowledge Base for Fine-Tune Lab > OpenAI Models > GPT-5 Mini"
    assert c.text.startswith(c.heading + "\n**Model ID:** gpt-5-mini")
    assert "gpt-4.1-mini" not in c.text  # the next model's heading starts another chunk
    # a heading's whole text fits in one chunk at the default size: one chunk per model section
    assert sum(c.heading.endswith("> GPT-5 Mini") for c in chunks) == 1


def test_a_code_block_that_fits_stays_whole_in_one_chunk() -> None:
    chunks = chunk(parse("knowledge-base.md", kb_text().encode()), max_words=60, overlap_words=10)
    (c,) = [c for c in chunks if '"name": "LLaMA 3 8B"' in c.text]
    assert "```json" in c.text and c.text.rstrip().endswith("```")
    assert c.heading == "Quick Start Guide > 1. List Available Models"


def test_a_table_under_a_heading_is_split_by_rows_with_its_header_row_repeated() -> None:
    source = kb_with_table()
    doc = parse("kb.md", source.encode())
    chunks = chunk(doc, max_words=20, overlap_words=5)
    check_invariants(doc, chunks, 20, source)
    table_chunks = [c for c in chunks if doc.sections[c.section_index].kind == "table"]
    assert len(table_chunks) >= 2
    rows: list[str] = []
    for c in table_chunks:
        assert c.heading.endswith("Model Comparison Tables > Price Comparison (Input / Output per 1M tokens)")
        header, *rest = body(c).split("\n")
        assert header == "Model | Input | Output"
        assert rest
        rows += rest
    assert rows == doc.sections[table_chunks[0].section_index].text.split("\n")[1:]  # all rows, in order, once


# --- DOCX -----------------------------------------------------------------------------------


def test_a_docx_table_chunk_has_its_cells_in_order_under_the_right_heading() -> None:
    doc = parse("handbook.docx", make_docx())
    chunks = chunk(doc)
    (table,) = [c for c in chunks if doc.sections[c.section_index].kind == "table"]
    assert table.heading == "Fleet Handbook > Vehicles"
    assert table.text == ("Fleet Handbook > Vehicles\n"
                          "Name | Kind | Depot\nRover-7 | truck | North\nSkiff-2 | boat | Harbor")
    cells = ["Name", "Kind", "Depot", "Rover-7", "truck", "North", "Skiff-2", "boat", "Harbor"]
    positions = [table.text.index(cell) for cell in cells]
    assert positions == sorted(positions)
    # the text around the table stays under the same heading, in chunks of its own
    around = [c.text for c in chunks if c.heading == "Fleet Handbook > Vehicles" and c is not table]
    assert around == ["Fleet Handbook > Vehicles\nEvery vehicle is listed below with its depot.",
                      "Fleet Handbook > Vehicles\nThe table is reviewed monthly."]
    assert [c.heading for c in chunks] == ["Fleet Handbook", "Fleet Handbook > Vehicles", "Fleet Handbook > Vehicles",
                                           "Fleet Handbook > Vehicles", "Fleet Handbook > Vehicles > Maintenance",
                                           "Fleet Handbook > Staff"]


# --- splitting rules on small documents -----------------------------------------------------


def sentence(n: int, k: int = 10) -> str:
    return " ".join([f"S{n}w{i}" for i in range(k - 1)] + [f"S{n}end."])


def doc_of(*sections: Section, fmt: str = "md") -> ParsedDocument:
    return ParsedDocument(format=fmt, sections=list(sections))  # type: ignore[arg-type]


def test_a_long_section_is_cut_at_paragraph_boundaries_first() -> None:
    paragraphs = [" ".join(sentence(p * 10 + s) for s in range(4)) for p in range(5)]  # 40 words each
    doc = doc_of(Section(heading_path=["H"], text="\n\n".join(paragraphs)))
    chunks = chunk(doc, max_words=100, overlap_words=0)
    assert [body(c) for c in chunks] == ["\n\n".join(paragraphs[0:2]), "\n\n".join(paragraphs[2:4]), paragraphs[4]]


def test_a_long_paragraph_is_cut_at_sentence_ends_with_whole_sentence_overlap() -> None:
    text = " ".join(sentence(n) for n in range(20))  # 200 words, 10 per sentence
    doc = doc_of(Section(heading_path=["Long", "Para"], text=text))
    chunks = chunk(doc, max_words=50, overlap_words=10)
    check_invariants(doc, chunks, 50, text)
    bodies = [body(c) for c in chunks]
    for b in bodies:
        assert b.startswith("S") and b.endswith("end.")  # whole sentences only
    for prev, nxt in itertools.pairwise(bodies):
        last = prev.rsplit("end. ", 1)[-1]
        assert nxt.startswith(last)  # the previous chunk's last sentence opens the next
    assert all(c.section_index == 0 for c in chunks)


def test_overlap_is_bounded_and_falls_back_to_words_for_a_long_last_sentence() -> None:
    text = " ".join(f"w{i}" for i in range(130))  # one unpunctuated run: cut in word windows
    doc = doc_of(Section(heading_path=[], text=text), fmt="txt")
    chunks = chunk(doc, max_words=50, overlap_words=10)
    assert [len(c.text.split()) for c in chunks][:-1] == [40, 50, 50][: len(chunks) - 1]
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.text.split()[:10] == prev.text.split()[-10:]
    check_invariants(doc, chunks, 50, text)


def test_a_long_code_block_is_cut_at_line_ends_each_piece_fenced() -> None:
    code = "```python\n" + "\n".join(f"x{i} = compute({i}, 'a', 'b')" for i in range(40)) + "\n```"
    doc = doc_of(Section(heading_path=["Code"], text="Example:\n\n" + code))
    chunks = chunk(doc, max_words=60, overlap_words=10)
    pieces = [body(c) for c in chunks]
    assert len(pieces) > 1
    for p in pieces[1:]:
        assert p.startswith("```python\n") and p.endswith("\n```")
    lines = [ln for p in pieces for ln in p.split("\n") if ln.startswith("x")]
    assert lines == [f"x{i} = compute({i}, 'a', 'b')" for i in range(40)]  # every line once, in order


def test_tiny_sections_under_one_heading_path_pack_together_but_never_across_headings() -> None:
    doc = doc_of(Section(heading_path=[], text="One."), Section(heading_path=[], text="Two words."),
                 Section(heading_path=[], text="Three more words."), fmt="txt")
    (only,) = chunk(doc)
    assert only == Chunk(index=0, heading="", text="One.\n\nTwo words.\n\nThree more words.", section_index=0)
    doc = doc_of(Section(heading_path=["A"], text="Tiny."), Section(heading_path=["A", "B"], text="Also tiny."),
                 Section(heading_path=["C"], text="Tiny too."))
    assert [c.text for c in chunk(doc)] == ["A\nTiny.", "A > B\nAlso tiny.", "C\nTiny too."]


def test_a_text_file_of_paragraphs_packs_them_and_points_at_each_chunks_first_section() -> None:
    paragraphs = [" ".join(sentence(p * 10 + s) for s in range(3)) for p in range(6)]  # 30 words each
    doc = parse("notes.txt", "\n\n".join(paragraphs).encode())
    chunks = chunk(doc, max_words=70, overlap_words=0)
    assert [c.section_index for c in chunks] == [0, 2, 4]
    assert chunks[1].text == paragraphs[2] + "\n\n" + paragraphs[3]


def test_a_table_with_a_huge_row_is_still_split() -> None:
    rows = ["a | b", "1 | " + " ".join(f"v{i}" for i in range(100)), "2 | small"]
    doc = doc_of(Section(heading_path=["T"], text="\n".join(rows), kind="table"))
    chunks = chunk(doc, max_words=30, overlap_words=5)
    assert all(body(c).startswith("a | b\n") for c in chunks)
    assert all(len(body(c).split()) <= 30 for c in chunks)
    assert not words("\n".join(rows)) - words("\n".join(c.text for c in chunks))


@pytest.mark.parametrize("max_words,overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(max_words: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk(doc_of(Section(text="x")), max_words=max_words, overlap_words=overlap)


def test_sentences_are_the_chunks_lines_and_sentences_led_by_their_section() -> None:
    from workbench.graphrag.chunking import Chunk, sentences

    c = Chunk(index=0, heading="Guide > Pricing", section_index=0,
              text="Guide > Pricing\nThe Team plan costs $249. It has ten seats.\n- Business: $1,190 a month\n- ok")
    assert sentences(c) == ["Pricing: The Team plan costs $249.", "Pricing: It has ten seats.",
                            "Pricing: Business: $1,190 a month"]  # "ok" is under three words
    bare = Chunk(index=0, heading="", section_index=0, text="No heading at all here. Second one too.")
    assert sentences(bare) == ["No heading at all here.", "Second one too."]
