"""Encryption at rest for secrets kept in the store (custom-endpoint API keys).

Secrets are Fernet tokens (AES-128-CBC + HMAC-SHA256) under one key in
``$WORKBENCH_HOME/secret.key``. The key file is readable by its owner only (mode 600), so
copying ``store.json`` alone leaks no secret. The file is created on first use; several
processes may race to do so, and all of them must end up with the same key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from . import home
from .errors import WorkbenchError

KEY_FILE = "secret.key"


class DecryptionFailed(WorkbenchError):
    """A stored secret cannot be decrypted: the key file changed since it was written."""

    code = "DECRYPTION_FAILED"
    http_status = 500


def key_path() -> Path:
    return home.home() / KEY_FILE


def _create_key_file(path: Path) -> None:
    """Publish a fresh key at ``path`` unless one exists; never leave a half-written file.

    The key is written to a private temp file (``O_CREAT|O_EXCL``, mode 600) and then
    hard-linked into place: ``link`` fails if the name exists, so the first process wins
    and a reader never sees an empty or partial key.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the umask is unusual
        os.write(fd, Fernet.generate_key())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race; use its key
    finally:
        os.unlink(tmp)


def load_key(path: Path | None = None) -> bytes:
    """The Fernet key, creating the key file on first use."""
    path = path or key_path()
    if not path.exists():
        _create_key_file(path)
    key = path.read_bytes().strip()
    if not key:
        raise DecryptionFailed(f"key file {path} is empty; delete it to create a new key (stored secrets are lost)")
    return key


def _fernet() -> Fernet:
    return Fernet(load_key())


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext``; the token is ASCII, safe to store in JSON."""
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token made by :func:`encrypt`; a wrong key or tampered token fails clearly."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed(
            f"cannot decrypt a stored secret with {key_path()}: the key does not match the one it was "
            "encrypted with (was secret.key replaced or WORKBENCH_HOME changed?); re-enter the secret"
        ) from exc
