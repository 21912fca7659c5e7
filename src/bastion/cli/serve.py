"""``bastion serve``, ``bastion keys`` and ``bastion review``: run the gateway, manage its keys, review its queue."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from bastion.cli.common import err_console, out_console
from bastion.errors import ConfigError
from bastion.gateway.config import GatewayConfig, load_config
from bastion.gateway.keys import Role
from bastion.gateway.store import Decision, ItemKind, ItemStatus, Store

__all__ = ["keys_app", "review_app", "serve_command"]

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Gateway configuration (TOML); BASTION__SECTION__KEY overrides.")
]
StoreOption = Annotated[
    str | None, typer.Option("--store", help="Store URL; overrides the configuration's [store] url.")
]

keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.", no_args_is_help=True)
review_app = typer.Typer(help="Review quarantined feedback and submissions, and monitor flags.", no_args_is_help=True)


def serve_command(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: the config's, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: the config's, 8000).")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve the bundled demo model; print a new admin key once.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Serve the model behind the guards: authentication, rate limits, validation, monitors, quarantine, audit."""
    import uvicorn

    from bastion.gateway import Gateway, create_app

    overrides: dict[str, object] = {} if store is None else {"store.url": store}
    settings = load_config(config, overrides=overrides)
    if demo and not settings.model.source.startswith("demo:"):  # a demo source from the config is kept
        settings = load_config(config, overrides={**overrides, "model.source": "demo:mnist"})
    gateway = Gateway.build(settings)
    if demo:
        secret, key = gateway.store.create_key(Role.ADMIN, "demo-admin")
        out_console.print(f"admin API key (shown once, key id {key.key_id}): [bold]{secret}[/]", highlight=False)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    err_console.print(f"serving {settings.model.source} on http://{bind_host}:{bind_port} (store {gateway.store.url})")
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from loopback peers; the
    # rate-limit guard reads it itself, from [server] trusted_proxies only.
    uvicorn.run(
        create_app(gateway), host=bind_host, port=bind_port, log_level="warning", access_log=False, proxy_headers=False
    )


def _open_store(config: Path | None, store: str | None) -> tuple[GatewayConfig, Store]:
    settings = load_config(config, overrides={"store.url": store} if store else None)
    return settings, Store.open(settings.store.url)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="client, reviewer or admin.")] = "client",
    name: Annotated[str, typer.Option(help="Who the key is for (shown in the audit log).")] = "",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create a key and print its secret once; only its hash is stored."""
    try:
        chosen = Role(role)
    except ValueError:
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(r.value for r in Role)}") from None
    _, opened = _open_store(config, store)
    try:
        secret, key = opened.create_key(chosen, name or chosen.value)
    finally:
        opened.close()
    err_console.print(f"created {key.role.value} key {key.key_id} ({key.name}); the secret is shown once:")
    out_console.print(secret, highlight=False)


@keys_app.command("list")
def keys_list(config: ConfigOption = None, store: StoreOption = None) -> None:
    """List the keys (ids, names, roles; never secrets)."""
    _, opened = _open_store(config, store)
    try:
        keys = opened.list_keys()
    finally:
        opened.close()
    table = Table(Column("key id", no_wrap=True, min_width=12), "name", "role", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id, key.name, key.role.value, key.created_at.isoformat(timespec="seconds"), str(key.revoked)
        )
    out_console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None, store: StoreOption = None) -> None:
    """Revoke a key by its id; gateways stop accepting it within seconds."""
    _, opened = _open_store(config, store)
    try:
        opened.revoke_key(key_id)
    finally:
        opened.close()
    err_console.print(f"revoked {key_id}")


_KINDS = {"submissions": "submission", "feedback": "feedback", "flags": "flag"}


def _status(status: str | None) -> ItemStatus | None:
    if status is None:
        return None
    try:
        return ItemStatus(status)
    except ValueError:
        raise ConfigError(
            f"unknown status {status!r}; expected one of {', '.join(s.value for s in ItemStatus)}"
        ) from None


def _kind(kind: str) -> str:
    if kind not in _KINDS:
        raise ConfigError(f"unknown queue {kind!r}; expected one of {', '.join(_KINDS)}")
    return _KINDS[kind]


@review_app.command("list")
def review_list(
    kind: Annotated[str, typer.Argument(help="submissions, feedback or flags.")] = "submissions",
    status: Annotated[str | None, typer.Option(help="Only items with this status (e.g. quarantined).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List a review queue."""
    chosen = _kind(kind)
    _, opened = _open_store(config, store)
    try:
        status_filter = _status(status) if chosen != "flag" else None
        rows: list[tuple[str, ...]]
        if chosen == "flag":
            rows = [
                (f.flag_id, f.client, f.kind, f.status.value, f.reason)
                for f in opened.list_flags(open_only=False, limit=limit)
            ]
        elif chosen == "feedback":
            rows = [
                (f.feedback_id, f.client, f"correct={f.correct} label={f.label}", f.status.value, f.prediction_id)
                for f in opened.list_feedback(status=status_filter, limit=limit)
            ]
        else:
            rows = [
                (s.submission_id, s.client, f"label={s.label}", s.status.value, s.input_sha256[:16])
                for s in opened.list_submissions(status=status_filter, limit=limit)
            ]
    finally:
        opened.close()
    # Ids are copied into approve/reject: never wrapped.
    table = Table(Column("id", no_wrap=True, min_width=32), "client", "what", "status", "detail")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    out_console.print(table)


def _decide(kind: str, item_id: str, decision: str, reason: str, config: Path | None, store: str | None) -> None:
    chosen = _kind(kind)
    _, opened = _open_store(config, store)
    try:
        recorded = opened.decide(
            kind=ItemKind(chosen),
            item_id=item_id,
            decision=Decision(decision),
            reviewer=f"cli:{getpass.getuser()}",
            reason=reason,
        )
    finally:
        opened.close()
    err_console.print(f"{recorded.decision} {chosen} {item_id} (decision {recorded.decision_id})")


@review_app.command("approve")
def review_approve(
    kind: str,
    item_id: str,
    reason: Annotated[str, typer.Option()] = "",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Approve a quarantined submission or feedback (or confirm a flag)."""
    _decide(kind, item_id, "confirm" if kind == "flags" else "approve", reason, config, store)


@review_app.command("reject")
def review_reject(
    kind: str,
    item_id: str,
    reason: Annotated[str, typer.Option()] = "",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Reject a quarantined submission or feedback (or dismiss a flag)."""
    _decide(kind, item_id, "dismiss" if kind == "flags" else "reject", reason, config, store)
