"""Datasets: registration, validation, stats, splitting, ownership and the bundled sample.

Read top to bottom as the specification of ``workbench.datasets``.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from workbench.dataset_validation import validate_file
from workbench.datasets import (
    SAMPLE_DATASET,
    SAMPLE_NAME,
    DatasetService,
    compute_stats,
    iter_chats,
    load_chats,
    split_indices,
)
from workbench.errors import InvalidInput, NotFound, TooLarge, ValidationFailed
from workbench.store import get_store

ROOT = Path(__file__).resolve().parents[1]


def chat(user: str, reply: str, system: str | None = None) -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": messages}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def svc(home: Path) -> DatasetService:
    return DatasetService()


def nothing_registered(home: Path) -> bool:
    folder = home / "datasets"
    return get_store().all("datasets") == [] and (not folder.exists() or not any(folder.iterdir()))


# --- registering good files ---------------------------------------------------------------

def test_chat_jsonl_registers_normalised_with_stats(svc: DatasetService, home: Path, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "name": "bot"}],
         "id": 1},
        chat("How are you?", "Fine, thanks.", system="Be brief."),
        "",  # blank lines are ignored
        chat("Bye", "Goodbye!"),
    ])
    rec = svc.register(src, name="My chats")

    assert rec["id"].startswith("dataset-") and rec["name"] == "My chats"
    assert (rec["samples"], rec["format"], rec["input_format"], rec["filename"]) == (3, "jsonl", "chat", "chats.jsonl")
    assert rec["size_mb"] == round(src.stat().st_size / 2**20, 2) and rec["created_at"].endswith("Z")
    data = Path(rec["path"])
    assert data == home / "datasets" / rec["id"] / "data.jsonl" == svc.path(rec["id"])
    assert rec["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    # extra keys are dropped: the stored file holds role + content only
    assert next(iter_chats(data)) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    stats = rec["stats"]
    assert stats["samples"] == 3 and stats["roles"] == {"system": 1, "user": 3, "assistant": 3, "tool": 0}
    assert stats["turns"] == {"min": 1, "mean": 1.0, "max": 1}
    assert stats["messages_per_sample"]["max"] == 3
    assert stats["chars"]["total"] == len("hi" + "hello" + "Be brief." + "How are you?" + "Fine, thanks." + "Bye" + "Goodbye!")
    assert stats["tokens"] is None and stats["histogram"]["unit"] == "chars" and sum(stats["histogram"]["counts"]) == 3
    assert svc.list() == [rec] and svc.get(rec["id"]) == rec


def test_prompt_completion_becomes_user_and_assistant_messages(svc: DatasetService, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": "Capital of France?", "completion": "Paris", "system": "Answer in one word."},
    ])
    rec = svc.register(src, name="pc")
    assert (rec["samples"], rec["format"], rec["input_format"]) == (2, "jsonl", "prompt_completion")
    assert load_chats(rec["path"]) == [
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
         {"role": "assistant", "content": "Paris"}],
    ]


def test_csv_with_column_mapping(svc: DatasetService, tmp_path: Path) -> None:
    src = tmp_path / "faq.csv"
    src.write_text('question,answer,sys\n"What, exactly?","It spans\ntwo lines",Be kind.\nWhy?,Because.,\n')
    rec = svc.register(src, name="faq", column_mapping={"prompt": "question", "completion": "answer", "system": "sys"})
    assert (rec["samples"], rec["format"], rec["input_format"]) == (2, "csv", "csv")
    assert load_chats(rec["path"]) == [
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What, exactly?"},
         {"role": "assistant", "content": "It spans\ntwo lines"}],
        [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}],  # empty system: omitted
    ]


def test_csv_defaults_to_prompt_completion_or_messages_columns(svc: DatasetService, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("prompt,completion\nhi,hello\n")
    assert svc.register(tmp_path / "a.csv", name="a")["samples"] == 1
    messages = json.dumps(chat("hi", "hello")["messages"]).replace('"', '""')
    (tmp_path / "b.csv").write_text(f'messages\n"{messages}"\n')
    assert load_chats(svc.register(tmp_path / "b.csv", name="b")["path"]) == [chat("hi", "hello")["messages"]]


@pytest.mark.parametrize(("filename", "content", "expected"), [
    ("x.jsonl", json.dumps(chat("a", "b")), "chat"),
    ("x.jsonl", json.dumps({"prompt": "a", "completion": "b"}), "prompt_completion"),
    ("x.csv", "prompt,completion\na,b", "csv"),
    (None, json.dumps({"prompt": "a", "completion": "b"}), "prompt_completion"),
    (None, "prompt,completion\na,b", "csv"),
])
def test_auto_detects_format_from_extension_or_first_line(svc: DatasetService, filename: str | None,
                                                          content: str, expected: str) -> None:
    rec = svc.register((content + "\n").encode(), name="auto", filename=filename)
    assert rec["input_format"] == expected and rec["samples"] == 1


def test_bytes_upload_leaves_only_the_normalised_file(svc: DatasetService, home: Path) -> None:
    rec = svc.register(json.dumps(chat("a", "b")).encode(), name="upload", filename="up.jsonl")
    assert rec["filename"] == "up.jsonl"
    assert [p.name for p in (home / "datasets" / rec["id"]).iterdir()] == ["data.jsonl"]


# --- rejecting bad files: every error, nothing registered ------------------------------

BAD_CHAT_LINES = [
    json.dumps(chat("ok", "fine")),                                                          # 1 good
    '{"messages": [',                                                                        # 2 bad JSON
    json.dumps({"conversation": []}),                                                        # 3 no messages
    json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"},
                             {"role": "assistant", "content": "z"}]}),                       # 4 bad role
    json.dumps({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "z"}]}),  # 5
    json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}),   # 6
    json.dumps({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "  "}]}),  # 7
    json.dumps({"messages": []}),                                                            # 8 empty list
    json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "z"}]}),    # 9 no content
]


def test_bad_chat_file_is_rejected_with_every_error_and_nothing_registered(
        svc: DatasetService, home: Path, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", BAD_CHAT_LINES)
    with pytest.raises(ValidationFailed) as info:
        svc.register(src, name="bad")
    err = info.value
    assert err.field == "file" and "8 error" in err.message
    assert [(e["line"], e["field"]) for e in err.details["errors"]] == [
        (2, "json"),
        (3, "messages"),
        (4, "messages[1].role"),
        (5, "messages[0].content"),
        (6, "messages"),
        (7, "messages"),
        (8, "messages"),
        (9, "messages[0].content"),
    ]
    assert err.details["total_errors"] == 8
    by_line = {e["line"]: e["message"] for e in err.details["errors"]}
    assert "'bot'" in by_line[4] and "valid string" in by_line[5] and "assistant" in by_line[6]
    assert nothing_registered(home)


def test_bad_bytes_upload_leaves_no_folder(svc: DatasetService, home: Path) -> None:
    with pytest.raises(ValidationFailed):
        svc.register(b'{"messages": "nope"}\n', name="bad", filename="bad.jsonl")
    assert nothing_registered(home)


def test_bad_prompt_completion_lines(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "a", "completion": "b"}, {"prompt": "a"}, {"prompt": 1, "completion": "b"},
        {"prompt": "a", "completion": ""}, {"prompt": "a", "completion": "b", "system": None}])
    with pytest.raises(ValidationFailed) as info:
        validate_file(src, "prompt_completion")
    assert [(e["line"], e["field"]) for e in info.value.details["errors"]] == [
        (2, "completion"), (3, "prompt"), (4, "completion"), (5, "system")]


def test_bad_csv_rows_and_missing_columns(svc: DatasetService, home: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("q,a\nhi,hello\nhi,\nonly-one-cell\n")
    with pytest.raises(ValidationFailed) as info:
        svc.register(src, name="csv", column_mapping={"prompt": "q", "completion": "a"})
    assert [(e["line"], e["field"]) for e in info.value.details["errors"]] == [(3, "completion"), (4, "row")]
    with pytest.raises(ValidationFailed) as info:
        svc.register(src, name="csv", column_mapping={"prompt": "question", "completion": "a"})
    assert info.value.details["errors"][0]["field"] == "column_mapping.prompt"
    with pytest.raises(InvalidInput, match="column mapping"):
        svc.register(src, name="csv", column_mapping={"prompt": "q"})
    assert nothing_registered(home)


def test_csv_errors_name_the_line_where_the_record_starts(tmp_path: Path) -> None:
    src = tmp_path / "m.csv"
    bad_messages = json.dumps([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]).replace('"', '""')
    src.write_text(f'messages,note\n"not json","a\nmulti-line\nnote"\n"{bad_messages}",ok\n')
    with pytest.raises(ValidationFailed) as info:
        validate_file(src)
    assert [(e["line"], e["field"]) for e in info.value.details["errors"]] == [(2, "messages"), (5, "messages[1].role")]
    src.write_bytes("prompt,completion\nhi,th\xe9re\n".encode("latin-1"))
    with pytest.raises(ValidationFailed) as info:
        validate_file(src)
    assert info.value.details["errors"][0]["field"] == "encoding"


def test_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path: Path) -> None:
    line = json.dumps(chat("hi", "hello")).encode()
    (tmp_path / "w.jsonl").write_bytes(b"\xef\xbb\xbf" + line + b"\r\n" + line + b"\r\n")
    assert validate_file(tmp_path / "w.jsonl").samples == 2
    (tmp_path / "w.csv").write_bytes("\ufeffprompt,completion\r\nhi,hello\r\n".encode())
    assert validate_file(tmp_path / "w.csv").samples == 1


def test_errors_are_capped_but_all_counted(svc: DatasetService, home: Path, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "junk.jsonl", ["not json"] * 150)
    with pytest.raises(ValidationFailed) as info:
        svc.register(src, name="junk")
    assert len(info.value.details["errors"]) == 100 and info.value.details["total_errors"] == 150
    assert info.value.details["errors"][-1]["line"] == 100
    assert nothing_registered(home)


@pytest.mark.parametrize("content", [b"", b"\n  \n\n", b"prompt,completion\n"])
def test_empty_files_are_rejected(svc: DatasetService, home: Path, content: bytes) -> None:
    filename = "e.csv" if content.startswith(b"prompt") else "e.jsonl"
    with pytest.raises(ValidationFailed, match="no samples"):
        svc.register(content, name="empty", filename=filename)
    assert nothing_registered(home)


def test_oversized_input_is_too_large(svc: DatasetService, home: Path, tmp_path: Path) -> None:
    data = (json.dumps(chat("a" * 100, "b")) + "\n").encode()
    with pytest.raises(TooLarge):
        svc.register(data, name="big", max_bytes=50)
    src = tmp_path / "big.jsonl"
    src.write_bytes(data)
    with pytest.raises(TooLarge):
        svc.register(src, name="big", max_bytes=50)
    assert nothing_registered(home)
    assert svc.register(src, name="fits", max_bytes=len(data))["samples"] == 1


def test_bad_arguments(svc: DatasetService, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        svc.register(b"{}", name="  ")
    assert info.value.field == "name"
    with pytest.raises(InvalidInput) as info:
        svc.register(b"{}", name="x", format="parquet")  # type: ignore[arg-type]
    assert info.value.field == "format"
    with pytest.raises(InvalidInput) as info:
        svc.register(tmp_path / "missing.jsonl", name="x")
    assert info.value.field == "source"


# --- stats ------------------------------------------------------------------------------

def test_exact_duplicates_are_counted(svc: DatasetService, tmp_path: Path) -> None:
    a, b = chat("a", "b"), chat("c", "d")
    rec = svc.register(write_jsonl(tmp_path / "d.jsonl", [a, b, a, a, b, chat("a", "B")]), name="dups")
    assert rec["stats"]["duplicates"] == 3


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A real byte-level BPE tokenizer trained in memory (no hub), with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Where is my order?", "Your order has shipped.", "Thanks for reaching out!",
                             "How do I reset my password?", "Click forgot password on the sign-in page."], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}")
    return fast


def _n_tokens(tok: Any, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_token_stats_use_the_chat_template(tokenizer: Any, tmp_path: Path) -> None:
    chats = [chat("Where is my order?", "Your order has shipped.", system="Be helpful."),
             chat("How do I reset my password?", "Click forgot password."),
             chat("Thanks!", "You're welcome.")]
    src = write_jsonl(tmp_path / "c.jsonl", chats)
    stats = compute_stats(src, tokenizer)

    per_sample = [_n_tokens(tokenizer, tokenizer.apply_chat_template(c["messages"], tokenize=False)) for c in chats]
    replies = sum(_n_tokens(tokenizer, c["messages"][-1]["content"]) for c in chats)
    tokens = stats["tokens"]
    assert tokens["total"] == sum(per_sample) and tokens["assistant"] == replies
    assert (tokens["min"], tokens["max"], tokens["p50"]) == (min(per_sample), max(per_sample), sorted(per_sample)[1])
    assert tokens["mean"] == round(sum(per_sample) / 3, 2)
    assert stats["histogram"]["unit"] == "tokens" and sum(stats["histogram"]["counts"]) == 3
    assert len(stats["histogram"]["bins"]) == 11 and stats["histogram"]["bins"][0] == min(per_sample)

    tokenizer_without_template = type(tokenizer)(tokenizer_object=tokenizer.backend_tokenizer)
    plain = compute_stats(src, tokenizer_without_template)["tokens"]["total"]
    assert plain == sum(_n_tokens(tokenizer, "\n".join(m["content"] for m in c["messages"])) for c in chats)
    assert plain < tokens["total"]  # the template's markers are counted too


def test_service_stats_loads_the_models_tokenizer(svc: DatasetService, tokenizer: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    fake = types.ModuleType("workbench.models")
    fake.load_tokenizer = lambda ref, owner="local": calls.append((ref, owner)) or tokenizer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "workbench.models", fake)

    rec = svc.register(write_jsonl(tmp_path / "c.jsonl", [chat("Where is my order?", "Shipped.")]),
                       name="c", owner="ann")
    assert svc.stats(rec["id"], "ann") == rec["stats"]  # stored, character-based
    stats = svc.stats(rec["id"], "ann", model="tiny-chat")
    assert calls == [("tiny-chat", "ann")] and stats["model"] == "tiny-chat" and stats["tokens"]["total"] > 0


# --- splitting ----------------------------------------------------------------------------

def test_split_indices_are_deterministic_disjoint_and_complete() -> None:
    train, evals = split_indices(100, 0.2, seed=1)
    assert (train, evals) == split_indices(100, 0.2, seed=1)
    assert split_indices(100, 0.2, seed=2) != (train, evals)
    assert len(evals) == 20 and not set(train) & set(evals) and sorted(train + evals) == list(range(100))
    assert split_indices(2, 0.01, seed=0)[1] != [] and split_indices(2, 0.99, seed=0)[0] != []  # one each, at least
    assert split_indices(10, 0.0, seed=0) == (list(range(10)), [])
    with pytest.raises(InvalidInput):
        split_indices(10, 1.0, seed=0)


def test_split_registers_train_and_eval_datasets(svc: DatasetService, tmp_path: Path) -> None:
    rows = [chat(f"question {i}", f"answer {i}") for i in range(20)]
    parent = svc.register(write_jsonl(tmp_path / "all.jsonl", rows), name="All")
    parts = svc.split(parent["id"], eval_fraction=0.25, seed=3)

    train, evals = parts["train"], parts["eval"]
    assert (train["name"], evals["name"]) == ("All (train)", "All (eval)")
    assert train["parent_id"] == evals["parent_id"] == parent["id"]
    assert (train["samples"], evals["samples"]) == (15, 5)
    train_idx, eval_idx = split_indices(20, 0.25, 3)
    assert load_chats(evals["path"]) == load_chats(parent["path"], eval_idx)
    assert load_chats(train["path"]) == load_chats(parent["path"], train_idx)
    assert {r["id"] for r in svc.list()} == {parent["id"], train["id"], evals["id"]}
    with pytest.raises(InvalidInput):
        svc.split(parent["id"], eval_fraction=0)



@pytest.mark.parametrize("where", ["second record", "writing the files", "eval record"])
def test_a_failed_split_leaves_no_record_and_no_folder(svc: DatasetService, home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    import workbench.datasets as datasets_mod
    from workbench.store import Transaction

    parent = svc.register(write_jsonl(tmp_path / "all.jsonl", [chat(f"q{i}", f"a{i}") for i in range(20)]),
                          name="All")
    store_before = (home / "store.json").read_bytes()
    if where == "second record":
        real_insert, seen = Transaction.insert, []

        def insert(self: Transaction, table: str, record: dict) -> dict:
            seen.append(table)
            if seen.count("datasets") == 2:
                raise OSError("crash between the two records")
            return real_insert(self, table, record)

        monkeypatch.setattr(Transaction, "insert", insert)
    elif where == "writing the files":
        def write(src: Path, outputs: dict) -> dict:
            for out in outputs:
                out.write_bytes(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(datasets_mod, "_write_subsets", write)
    else:
        real_record = DatasetService._record

        def record(*args, **kwargs):
            if args[1].endswith("(eval)"):
                raise RuntimeError("stats failed")
            return real_record(*args, **kwargs)

        monkeypatch.setattr(DatasetService, "_record", staticmethod(record))

    with pytest.raises((OSError, RuntimeError)):
        svc.split(parent["id"], eval_fraction=0.25, seed=3)

    assert (home / "store.json").read_bytes() == store_before
    assert [r["id"] for r in get_store().all("datasets")] == [parent["id"]]
    assert sorted(p.name for p in (home / "datasets").iterdir()) == [parent["id"]]

def test_load_chats_by_index_keeps_the_requested_order(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [chat(str(i), str(i)) for i in range(5)])
    assert [c[0]["content"] for c in load_chats(src, [3, 0, 4])] == ["3", "0", "4"]
    with pytest.raises(InvalidInput):
        load_chats(src, [7])


# --- ownership and deletion -----------------------------------------------------------------

def test_other_owners_see_nothing(svc: DatasetService, tmp_path: Path) -> None:
    rec = svc.register(write_jsonl(tmp_path / "c.jsonl", [chat("a", "b"), chat("c", "d")]), name="mine", owner="ann")
    assert svc.list("bob") == [] and svc.list("ann") == [rec]
    for call in (svc.get, svc.path, svc.stats, svc.split, svc.delete):
        with pytest.raises(NotFound):
            call(rec["id"], owner="bob")
    assert svc.get(rec["id"], "ann") == rec


def test_delete_removes_record_and_folder(svc: DatasetService, home: Path, tmp_path: Path) -> None:
    rec = svc.register(write_jsonl(tmp_path / "c.jsonl", [chat("a", "b")]), name="gone")
    svc.delete(rec["id"])
    assert not (home / "datasets" / rec["id"]).exists() and svc.list() == []
    with pytest.raises(NotFound):
        svc.get(rec["id"])


# --- the bundled sample ----------------------------------------------------------------------

def test_register_sample_is_idempotent_per_owner(svc: DatasetService) -> None:
    first = svc.register_sample()
    assert first["name"] == SAMPLE_NAME and first["samples"] == 400 and first["is_sample"]
    assert svc.register_sample() == first and len(svc.list()) == 1
    other = svc.register_sample(owner="bob")
    assert other["id"] != first["id"] and other["owner"] == "bob"


def test_sample_file_is_the_generators_output() -> None:
    gen = runpy.run_path(str(ROOT / "scripts" / "make_sample_dataset.py"), run_name="make_sample_dataset")
    assert SAMPLE_DATASET.read_text(encoding="utf-8") == "\n".join(gen["generate"]()) + "\n"
    assert SAMPLE_DATASET.stat().st_size < 1_000_000
    report = validate_file(SAMPLE_DATASET, "chat")
    assert report.samples == 400
    chats = load_chats(SAMPLE_DATASET)
    assert all(c[0] == {"role": "system", "content": gen["SYSTEM"]} for c in chats)
    assert any(len(c) == 5 for c in chats)  # some chats have a second turn
