"""``bastion keys`` and ``bastion review`` against a real store file; refusals with exit codes, never tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main
from bastion.gateway.keys import Role
from bastion.gateway.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long messages


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


def test_keys_create_list_revoke(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, err = run(capsys, "keys", "create", "--role", "reviewer", "--name", "alice", "--store", store_url)
    assert code == 0
    secret = out.strip()
    assert secret.startswith("bst_")
    with Store.open(store_url) as store:
        key = store.authenticate(secret)
    assert key is not None and (key.role, key.name) == (Role.REVIEWER, "alice")
    assert key.key_id in err
    code, out, _ = run(capsys, "keys", "list", "--store", store_url)
    assert code == 0 and "alice" in out and key.key_id in out and secret not in out
    assert run(capsys, "keys", "revoke", key.key_id, "--store", store_url)[0] == 0
    with Store.open(store_url) as store:
        assert store.authenticate(secret) is None


def test_keys_refuse_a_bad_role_and_an_unknown_id(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, _, err = run(capsys, "keys", "create", "--role", "root", "--store", store_url)
    assert code == 2 and "unknown role 'root'" in err
    code, _, err = run(capsys, "keys", "revoke", "nope", "--store", store_url)
    assert code == 2 and "nope" in err


def test_review_list_approve_reject(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    with Store.open(store_url) as store:
        first = store.add_submission(client="c1", x=np.zeros((1, 8, 8), np.float32), label=3)
        second = store.add_submission(client="c2", x=np.ones((1, 8, 8), np.float32), label=4)
        flag = store.add_flag(client="c2", kind="query", reason="near-duplicates", evidence={"score": 0.1})
    code, out, _ = run(capsys, "review", "list", "submissions", "--status", "quarantined", "--store", store_url)
    assert code == 0 and first in out and second in out
    assert run(capsys, "review", "approve", "submissions", first, "--reason", "fine", "--store", store_url)[0] == 0
    assert run(capsys, "review", "reject", "submissions", second, "--store", store_url)[0] == 0
    assert run(capsys, "review", "reject", "flags", flag, "--store", store_url)[0] == 0
    with Store.open(store_url) as store:
        statuses = {s.submission_id: s.status.value for s in store.list_submissions()}
        decisions = store.list_decisions()
        flags = store.list_flags(open_only=False)
    assert statuses == {first: "approved", second: "rejected"}
    assert {d.decision.value for d in decisions} == {"approve", "reject", "dismiss"}
    assert all(d.reviewer.startswith("cli:") for d in decisions)
    assert flags[0].status.value == "dismissed"
    code, _, err = run(capsys, "review", "approve", "submissions", first, "--store", store_url)
    assert code == 2 and "already" in err


def test_review_refuses_unknown_queues_and_statuses(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, _, err = run(capsys, "review", "list", "everything", "--store", store_url)
    assert code == 2 and "unknown queue 'everything'" in err
    code, _, err = run(capsys, "review", "list", "feedback", "--status", "lost", "--store", store_url)
    assert code == 2 and "unknown status 'lost'" in err


def test_serve_with_a_missing_config_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "serve", "--config", str(tmp_path / "absent.toml"))
    assert code == 2 and "absent.toml" in err and "does not exist" in err
