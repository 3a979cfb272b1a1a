"""Encryption at rest: secrets in store.json are Fernet tokens under a private key file."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from workbench import crypto
from workbench.store import Store

SECRET = "sk-live-0123456789abcdef"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_round_trip(home: Path) -> None:
    for text in [SECRET, "", "ünïcödé ✓ key"]:
        assert crypto.decrypt(crypto.encrypt(text)) == text


def test_key_file_is_created_on_first_use_with_mode_600(home: Path) -> None:
    assert not (home / "secret.key").exists()
    crypto.encrypt("x")
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_bytes())  # a valid Fernet key
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")], "no temp files left behind"


def test_existing_key_is_reused(home: Path) -> None:
    token = crypto.encrypt(SECRET)
    key = (home / "secret.key").read_bytes()
    assert crypto.load_key() == key.strip()
    assert crypto.decrypt(token) == SECRET


def test_ciphertext_in_store_json_does_not_contain_the_plaintext(home: Path) -> None:
    token = crypto.encrypt(SECRET)
    assert SECRET not in token
    Store(home / "store.json").insert("models", {"id": "m1", "owner": "u", "api_key_encrypted": token})
    raw = (home / "store.json").read_text()
    assert token in raw
    assert SECRET not in raw


def test_same_plaintext_encrypts_differently_each_time(home: Path) -> None:
    assert crypto.encrypt(SECRET) != crypto.encrypt(SECRET)


def test_wrong_key_fails_clearly(home: Path) -> None:
    token = crypto.encrypt(SECRET)
    (home / "secret.key").write_bytes(Fernet.generate_key())
    with pytest.raises(crypto.DecryptionFailed, match="secret.key") as err:
        crypto.decrypt(token)
    assert err.value.code == "DECRYPTION_FAILED"


def test_tampered_token_fails_clearly(home: Path) -> None:
    token = crypto.encrypt(SECRET)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(token[:-6] + "AAAAAA")
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt("not a token")


def test_processes_racing_to_create_the_key_agree_on_one(home: Path) -> None:
    code = "from workbench import crypto; print(crypto.load_key().decode())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=REPO) for _ in range(4)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert keys == {(home / "secret.key").read_text().strip()}
    assert stat.S_IMODE((home / "secret.key").stat().st_mode) == 0o600
