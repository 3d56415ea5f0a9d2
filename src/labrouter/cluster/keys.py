"""The cluster keyring and join codes.

Owns the keyring file format (``paths.keyring_file``, mode 0600; the caller passes
``app.paths.write_private`` to ``save_keyring``, as cluster/ must not import app/):
several 32-byte cluster keys by their 4-byte id, one of them active (it seals what this
node sends; every key in the ring opens what it receives, so a key can be rotated with
add -> use -> remove). Owns the join code, the text form of a key that a person types on
another machine: ``LR1-`` + base32 of the key and a 2-byte checksum, grouped by five, so a
typo gives a clear error instead of a silent split-brain; and the fingerprint (the key id,
``abcd-ef01``) people compare between machines.

Keys are never logged. Must not import asyncio, sockets, app/ or desktop packages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import KeyringError
from .wire import key_id

KEY_SIZE = 32
CODE_PREFIX = "LR1"
_CONFUSABLE = str.maketrans({"0": "O", "1": "I", "8": "B", "9": "G"})


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def fingerprint(key: bytes) -> str:
    """Short, comparable, and safe to show: the key id in hex, ``abcd-ef01``."""
    h = key_id(key).hex()
    return f"{h[:4]}-{h[4:]}"


def _checksum(key: bytes) -> bytes:
    return hashlib.sha256(b"labrouter/join" + key).digest()[:2]


def encode_join_code(key: bytes) -> str:
    """``LR1-XXXXX-XXXXX-...``: the key and a checksum in base32, grouped by five."""
    if len(key) != KEY_SIZE:
        raise KeyringError(f"a cluster key has {KEY_SIZE} bytes, not {len(key)}")
    text = base64.b32encode(key + _checksum(key)).decode().rstrip("=")
    return "-".join([CODE_PREFIX, *(text[i:i + 5] for i in range(0, len(text), 5))])


def decode_join_code(code: str) -> bytes:
    """The key in a join code. Raises KeyringError saying what is wrong with it."""
    hint = "Copy the code again from `labrouter key export` on a machine of the cluster."
    text = "".join(code.split()).replace("-", "").upper()
    if not text.startswith(CODE_PREFIX):
        raise KeyringError(f"not a labrouter join code (it should start with {CODE_PREFIX}-)",
                           hint=hint)
    text = text[len(CODE_PREFIX):].translate(_CONFUSABLE)
    bad = sorted({c for c in text if c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"})
    if bad:
        raise KeyringError(f"the join code has characters that cannot be in it: {''.join(bad)}",
                           hint=hint)
    want = len(base64.b32encode(b"\0" * (KEY_SIZE + 2)).decode().rstrip("="))
    if len(text) != want:
        raise KeyringError(
            f"the join code has {len(text)} letters after {CODE_PREFIX}, it should have {want}"
            " (a group was left out or typed twice)", hint=hint)
    raw = base64.b32decode(text + "=" * (-len(text) % 8))
    key, check = raw[:KEY_SIZE], raw[KEY_SIZE:]
    canonical = base64.b32encode(raw).decode().rstrip("=")  # the last letter's spare bits
    if _checksum(key) != check or canonical != text:
        raise KeyringError("the join code has a typo (its checksum does not match)", hint=hint)
    return key


@dataclass
class Keyring:
    """Cluster keys by id (hex), and which one is active."""

    keys: dict[str, bytes] = field(default_factory=dict)
    active: str = ""

    @property
    def active_key(self) -> bytes | None:
        return self.keys.get(self.active)

    def by_id(self) -> dict[bytes, bytes]:
        """Key id (4 bytes) -> key, for the Gate."""
        return {bytes.fromhex(k): v for k, v in self.keys.items()}

    def add(self, key: bytes, activate: bool = False) -> str:
        if len(key) != KEY_SIZE:
            raise KeyringError(f"a cluster key has {KEY_SIZE} bytes, not {len(key)}")
        kid = key_id(key).hex()
        self.keys[kid] = key
        if activate or not self.active:
            self.active = kid
        return kid

    def find(self, ref: str) -> str:
        """A key id from its fingerprint, id, or a unique prefix of them."""
        want = ref.strip().lower().replace("-", "")
        matches = [k for k in self.keys if k.startswith(want)] if want else []
        if len(matches) != 1:
            known = ", ".join(fingerprint(v) for v in self.keys.values()) or "none"
            what = "no key" if not matches else "more than one key"
            raise KeyringError(f"{what} matches {ref!r}; keys: {known}",
                               hint="Give the fingerprint shown by `labrouter key show`.")
        return matches[0]

    def use(self, ref: str) -> str:
        self.active = self.find(ref)
        return self.active

    def remove(self, ref: str) -> str:
        kid = self.find(ref)
        if kid == self.active and len(self.keys) > 1:
            raise KeyringError("that key is the active one",
                               hint="Make another key active first with `labrouter key use`.")
        del self.keys[kid]
        if kid == self.active:
            self.active = ""
        return kid

    def to_json(self) -> str:
        return json.dumps({
            "version": 1, "active": self.active,
            "keys": [{"id": k, "key": base64.b64encode(v).decode()} for k, v in self.keys.items()],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "keyring") -> Keyring:
        try:
            data = json.loads(text)
            ring = cls()
            for item in data["keys"]:
                ring.add(base64.b64decode(item["key"], validate=True))
            active = data.get("active", "")
            if active in ring.keys:
                ring.active = active
            return ring
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(
                f"{source}: not a valid keyring file ({exc})",
                hint="Remove it and join again with `labrouter join CODE`.") from None


def load_keyring(path: Path) -> Keyring:
    """The keyring at path; an empty one when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Keyring()
    except OSError as exc:
        raise KeyringError(f"{path}: cannot be read: {exc.strerror}",
                           hint="Check the file's owner and permissions.") from None
    ring = Keyring.from_json(text, str(path))
    if os.name != "nt" and path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a key readable by others is repaired, not refused
    return ring


def save_keyring(path: Path, ring: Keyring, write: Callable[[Path, bytes], None]) -> None:
    """Write the keyring with ``write`` (``app.paths.write_private``: 0600, atomic)."""
    write(path, ring.to_json().encode())
