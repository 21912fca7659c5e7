"""``bastion assess --target URL``: options checked by name, clear errors, no secrets echoed."""

from __future__ import annotations

import socket

import pytest

from bastion.cli.main import main

SHAPE = ["--input-shape", "1,8,8", "--num-classes", "10"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "ftp://m.test/p", "--data", "demo:digits:test", *SHAPE], "expected an http:// or https:// URL"),
        (["--target", "http://m.test/p", *SHAPE], "--target needs --data"),
        (["demo:digits", "--target", "http://m.test/p", "--data", "demo:digits:test", *SHAPE], "not both"),
        (["--target", "http://m.test/p", "--data", "demo:digits:test"], "--target needs --input-shape"),
        (["--target", "http://m.test/p", "--data", "demo:digits:test", *SHAPE, "--bounds", "0"], "--bounds: expected"),
        (["--target", "http://m.test/p", "--data", "x.npz", *SHAPE, "--knowledge", "white-box"], "scores or labels"),
    ],
)
def test_bad_remote_options_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assess", *args, "-q"]) == 2
    assert message in capsys.readouterr().err


def test_a_header_without_a_name_is_refused_without_echoing_it(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--target", "http://m.test/p", "--data", "demo:digits:test", *SHAPE, "--header", "Bearer s3cret"]
    assert main(["assess", *args, "-q"]) == 2
    err = capsys.readouterr().err
    assert "--header: expected 'Name: value'" in err and "s3cret" not in err


def test_an_unreachable_host_exits_3_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    args = ["--target", f"http://127.0.0.1:{port}/predict", "--data", "demo:digits:test", *SHAPE, "-n", "8"]
    assert main(["assess", *args, "-q", "--header", "Authorization: Bearer s3cret"]) == 3
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert f"http://127.0.0.1:{port}/predict failed after 1 attempt: cannot connect to the host" in err
    assert "s3cret" not in err
