"""API keys: secrets' shape, hashing, and the store keeping only hashes while authenticating by them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from bastion.errors import InvalidInputError, NotFoundError
from bastion.gateway.keys import ApiKey, Role, hash_secret, key_id_of, new_secret
from bastion.gateway.store import Store
from bastion.gateway.store.schema import open_database


def database_dump(url: str) -> str:
    """Every row of every table at ``url`` as text, plus (SQLite) the raw bytes of its files."""
    db = open_database(url)
    try:
        reflected = MetaData()
        with db.engine.connect() as conn:
            reflected.reflect(conn)
            rows = [repr(row) for table in reflected.sorted_tables for row in conn.execute(select(table))]
    finally:
        db.dispose()
    dump = "\n".join(rows)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
        dump += "\n".join(p.read_bytes().decode("latin-1") for p in files)
    return dump


def test_new_secret_has_the_documented_shape() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("bst_")
        assert len(secret) == 4 + 12 + 1 + 43
        assert key_id_of(secret) == secret[4:16]


def test_hash_secret_is_sha256_hex() -> None:
    assert hash_secret("bst_abc") == hashlib.sha256(b"bst_abc").hexdigest()
    assert hash_secret("\ud800") == hashlib.sha256("\ud800".encode("utf-8", "surrogatepass")).hexdigest()


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "bst_",
        "Bearer bst_0123456789ab_" + "a" * 43,
        "bst_0123456789AB_" + "a" * 43,  # the id is lower-case hex
        "bst_0123456789a_" + "a" * 44,  # 11-character id
        "bst_0123456789ab_" + "a" * 42,
        "bst_0123456789ab_" + "a" * 44,
        "bst_0123456789ab_" + "a" * 42 + "=",
        "bst_0123456789ab_" + "a" * 43 + "\n",
        "xyz_0123456789ab_" + "a" * 43,
        "bst_0123456789ab_" + "a" * 42 + "\x00",
    ],
)
def test_key_id_of_rejects_malformed_secrets(secret: str) -> None:
    assert key_id_of(secret) is None


def test_key_id_of_refuses_non_strings() -> None:
    assert key_id_of(None) is None  # type: ignore[arg-type]
    assert key_id_of(b"bst_0123456789ab_" + b"a" * 43) is None  # type: ignore[arg-type]


def test_key_id_of_accepts_dashes_and_underscores_in_the_random_part() -> None:
    assert key_id_of("bst_0123456789ab_" + "-_" * 21 + "Z") == "0123456789ab"


def test_create_key_returns_the_secret_and_stores_only_its_hash(store: Store, store_url: str) -> None:
    secret, key = store.create_key(Role.REVIEWER, "alice's laptop")
    assert key == ApiKey(key_id_of(secret) or "", "alice's laptop", Role.REVIEWER, key.created_at, revoked=False)
    assert key.created_at.utcoffset() is not None
    dump = database_dump(store_url)
    assert hash_secret(secret) in dump  # the dump really covers the keys table
    assert secret not in dump
    assert secret[17:] not in dump  # nor the random part on its own


def test_authenticate_accepts_the_secret_and_nothing_near_it(store: Store) -> None:
    secret, key = store.create_key(Role.CLIENT, "c")
    assert store.authenticate(secret) == key
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert store.authenticate(tampered) is None
    assert store.authenticate(new_secret()) is None  # well formed, unknown id
    assert store.authenticate(secret.upper()) is None
    assert store.authenticate(secret + " ") is None
    assert store.authenticate("") is None
    assert store.authenticate("bst_'; DROP TABLE api_keys; --") is None
    assert store.authenticate(secret) == key  # the table survived


def test_revoked_keys_no_longer_authenticate(store: Store) -> None:
    secret, key = store.create_key(Role.ADMIN, "root")
    other_secret, other = store.create_key(Role.CLIENT, "other")
    store.revoke_key(key.key_id)
    store.revoke_key(key.key_id)  # again: a no-op
    assert store.authenticate(secret) is None
    assert store.authenticate(other_secret) == other
    listed = {k.key_id: k for k in store.list_keys()}
    assert listed[key.key_id].revoked and not listed[other.key_id].revoked
    assert store.counts()["keys_active"] == 1 and store.counts()["keys_revoked"] == 1


def test_revoke_unknown_key_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no API key with id 'ffffffffffff'"):
        store.revoke_key("ffffffffffff")


def test_list_keys_oldest_first_with_roles(store: Store) -> None:
    made = [store.create_key(role, f"key {role.value}")[1] for role in Role]
    assert store.list_keys() == made


@pytest.mark.parametrize(("role", "name", "match"), [("root", "x", "expected role in"), (Role.CLIENT, "", "non-empty")])
def test_create_key_validates_role_and_name(store: Store, role: Role, name: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        store.create_key(role, name)


def test_create_key_accepts_role_strings(store: Store) -> None:
    _, key = store.create_key("reviewer", "r")  # type: ignore[arg-type]
    assert key.role is Role.REVIEWER
