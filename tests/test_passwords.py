from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from mailhaven import passwords
from mailhaven.passwords import hash_password, needs_rehash, verify_dummy, verify_password


def test_hash_is_argon2id_and_salted() -> None:
    first = hash_password("correct horse")
    second = hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh random salt every time
    assert "correct horse" not in first


def test_verify_accepts_the_password_and_rejects_others() -> None:
    stored = hash_password("s3cret ünïcode")
    assert verify_password(stored, "s3cret ünïcode") is True
    assert verify_password(stored, "s3cret unicode") is False
    assert verify_password(stored, "") is False


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "plaintext",
        "$argon2id$v=19$m=65536,t=3,p=4$!!!$!!!",
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "$2b$12$abcdefghijklmnopqrstuu",
    ],
)
def test_malformed_hash_verifies_false_and_needs_rehash(malformed: str) -> None:
    assert verify_password(malformed, "anything") is False
    assert needs_rehash(malformed) is True


def test_password_that_cannot_be_encoded_is_rejected_not_raised() -> None:
    stored = hash_password("x")
    assert verify_password(stored, "\udc80") is False


def test_needs_rehash_only_for_weaker_parameters() -> None:
    assert needs_rehash(hash_password("pw")) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert needs_rehash(weak) is True
    assert verify_password(weak, "pw") is True  # old hashes keep working until upgraded


class RecordingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified.append(str(hash))
        return super().verify(hash, password)


def test_verify_dummy_runs_a_full_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingHasher()
    monkeypatch.setattr(passwords, "_hasher", recorder)
    verify_dummy("whatever")
    # One verification against a hash with the current parameters: the same cost as
    # checking a real user's password.
    assert len(recorder.verified) == 1
    assert recorder.verified[0].startswith("$argon2id$")
    assert needs_rehash(recorder.verified[0]) is False


def test_verify_dummy_never_raises() -> None:
    verify_dummy("\udc80")
    verify_dummy("")
