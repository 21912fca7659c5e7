"""The reviewers' web pages: sign in with a key, see flagged clients and quarantined items, approve or reject them.

Every page runs through the same guards as the API (audit, rate limit, size limit); the auth
guard reads the session cookie on these endpoints (see :mod:`bastion.gateway.review.session`).
Decisions go through :meth:`Store.decide`, which writes the decision and its audit event together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import jinja2
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler
from bastion.gateway.endpoints import render_input_png
from bastion.gateway.guards.validation import DECISIONS, check_text
from bastion.gateway.keys import Role
from bastion.gateway.review.session import COOKIE
from bastion.gateway.store import Decision, ItemKind, ItemStatus

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["UI_KINDS", "page_handlers"]

UI_KINDS = {"submissions": "submission", "feedback": "feedback", "flags": "flag"}
_REVIEWERS = (Role.REVIEWER, Role.ADMIN)
_DONE = {"approve": "approved", "reject": "rejected", "dismiss": "dismissed", "confirm": "confirmed"}
_ITEM_ID = re.compile(r"^[0-9a-f]{32}$")


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bastion.gateway.review", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def page_handlers(gateway: Gateway) -> dict[str, Handler]:
    """One handler per review page, bound to ``gateway``."""

    async def login(call: Call) -> Response:
        if call.request.method == "GET":
            return _html("login.html", error=None)
        form = await _form(call)
        secret = str(form.get("api_key", ""))
        key = await anyio.to_thread.run_sync(gateway.store.authenticate, secret) if secret else None
        if key is None or key.role not in _REVIEWERS:
            call.status = 401
            return _html("login.html", status=401, error="That key is unknown, revoked, or not a reviewer's.")
        call.principal = key
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(
            COOKIE,
            gateway.sessions.issue(key.key_id),
            max_age=int(gateway.sessions.ttl_seconds),
            httponly=True,
            samesite="strict",
            secure=call.request.url.scheme == "https",
            path="/review",
        )
        return response

    async def logout(call: Call) -> Response:
        await _checked_form(call, gateway)
        response = RedirectResponse("/review/login", status_code=303)
        response.delete_cookie(COOKIE, path="/review")
        return response

    async def home(call: Call) -> Response:
        context = await anyio.to_thread.run_sync(_queue, gateway)
        token = call.request.cookies.get(COOKIE, "")
        principal = call.principal
        return _html(
            "review.html",
            reviewer=principal.name if principal is not None else "",
            role=principal.role.value if principal is not None else "",
            csrf=gateway.sessions.csrf_token(token),
            notice=_notice(call.request.query_params),
            label_name=_label_namer(gateway),
            **context,
        )

    async def decide(call: Call) -> Response:
        form = await _checked_form(call, gateway)
        kind = UI_KINDS.get(str(call.request.path_params.get("kind", "")))
        decision = str(form.get("decision", ""))
        if kind is None or decision not in DECISIONS:
            raise RequestRejectedError("bad_field", f"unknown queue or decision {decision[:20]!r}", status=422)
        reason = check_text(str(form.get("reason", "")), "reason")
        reviewer = call.principal.key_id if call.principal is not None else "anonymous"
        item_id = str(call.request.path_params.get("item_id", ""))
        await anyio.to_thread.run_sync(
            functools.partial(
                gateway.store.decide,
                kind=ItemKind(kind),
                item_id=item_id,
                decision=Decision(decision),
                reviewer=reviewer,
                reason=reason,
            )
        )
        return RedirectResponse(f"/review?done={decision}&kind={kind}&item={item_id}", status_code=303)

    async def image(call: Call) -> Response:
        item_id = str(call.request.path_params.get("item_id", ""))
        found = await anyio.to_thread.run_sync(gateway.store.get_submission, item_id)
        if found is None:
            raise RequestRejectedError("not_found", "no such submission", status=404)
        return Response(render_input_png(found.x, gateway.model.bounds), media_type="image/png")

    return {"ui.login": login, "ui.logout": logout, "ui.home": home, "ui.decide": decide, "ui.image": image}


def _queue(gateway: Gateway) -> dict[str, Any]:
    store = gateway.store
    flags = store.list_flags(open_only=True, limit=200)
    flagged: dict[str, str] = {}
    for flag in flags:
        flagged.setdefault(flag.client, flag.kind)
        for other in flag.linked_clients:
            flagged.setdefault(other, f"linked to {flag.client}")
    waiting = (ItemStatus.QUARANTINED, ItemStatus.OMITTED)
    return {
        "flags": flags,
        "flagged": flagged,
        "submissions": [s for status in waiting for s in store.list_submissions(status=status, limit=200)],
        "feedback": [f for status in waiting for f in store.list_feedback(status=status, limit=200)],
    }


def _notice(query: Mapping[str, str]) -> str | None:
    """What the last decision did, e.g. "rejected submission <id>"; None unless the query names a real decision.

    Built from checked parts only, so that a crafted link cannot make the page say anything else.
    """
    decision, kind, item_id = query.get("done", ""), query.get("kind", ""), query.get("item", "")
    if decision not in _DONE or kind not in UI_KINDS.values() or not _ITEM_ID.match(item_id):
        return None
    return f"{_DONE[decision]} {kind} {item_id}"


def _label_namer(gateway: Gateway) -> Any:
    names = gateway.config.model.class_names

    def name(label: int | None) -> str:
        if label is None:
            return "-"
        return f"{label} ({names[label]})" if names is not None and label < len(names) else str(label)

    return name


async def _form(call: Call) -> FormData:
    content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise RequestRejectedError(
            "unsupported_media_type", f"expected a form, got {content_type or '(none)'!r}", status=415
        )
    call.request._body = await call.body()  # Starlette parses the cached body
    try:
        return await call.request.form(max_files=0, max_fields=8)
    except Exception as error:
        raise RequestRejectedError(
            "malformed_form", f"the form could not be parsed: {type(error).__name__}", status=422
        ) from None


async def _checked_form(call: Call, gateway: Gateway) -> FormData:
    """The form, after checking its CSRF token against the session cookie."""
    form = await _form(call)
    token = call.request.cookies.get(COOKIE, "")
    if not gateway.sessions.check_csrf(token, str(form.get("csrf", ""))):
        raise RequestRejectedError("bad_csrf_token", "the form's CSRF token does not match this session", status=403)
    return form


def _html(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    headers = {"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'", "X-Frame-Options": "DENY"}
    return HTMLResponse(_templates().get_template(template).render(**context), status_code=status, headers=headers)
