"""The innermost handlers: what each endpoint does once every guard has let the call through."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
from PIL import Image
from starlette.responses import JSONResponse, PlainTextResponse, Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler
from bastion.gateway.store import Decision, ItemKind, ItemStatus

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["handlers", "render_input_png"]

_KINDS = {"feedback": "feedback", "submissions": "submission", "flags": "flag"}
_ITEM_STATUSES = frozenset(s.value for s in ItemStatus)
_STATUSES = ("quarantined", "approved", "rejected", "omitted", "open", "dismissed", "confirmed")


def handlers(gateway: Gateway) -> dict[str, Handler]:
    """One handler per endpoint name, bound to ``gateway``."""

    async def predict(call: Call) -> Response:
        return JSONResponse(call.result)

    async def feedback(call: Call) -> Response:
        payload = _payload(call)
        record = await _run(_add_feedback, gateway, call.client, payload)
        return JSONResponse(record, status_code=202)

    async def submissions(call: Call) -> Response:
        if call.inputs is None:
            raise RequestRejectedError("missing_field", "a submission needs 'inputs' or an image", status=422)
        label = _payload(call)["label"]
        submission_id = await _run(gateway.store.add_submission, client=call.client, x=call.inputs[0], label=label)
        return JSONResponse({"submission_id": submission_id, "status": "quarantined"}, status_code=202)

    async def review_list(call: Call) -> Response:
        kind = _kind(call)
        status = call.request.query_params.get("status")
        if status is not None and status not in _STATUSES:
            raise RequestRejectedError(
                "bad_query", f"status must be one of {list(_STATUSES)}, got {status[:40]!r}", status=422
            )
        limit = _limit(call)
        items = await _run(_list_items, gateway, kind, status, limit)
        return JSONResponse({"items": items})

    async def review_item(call: Call) -> Response:
        found = await _run(gateway.store.get_submission, _item_id(call))
        if found is None:
            raise RequestRejectedError("not_found", "no such submission", status=404)
        return JSONResponse(_jsonable(found))

    async def review_image(call: Call) -> Response:
        found = await _run(gateway.store.get_submission, _item_id(call))
        if found is None:
            raise RequestRejectedError("not_found", "no such submission", status=404)
        png = render_input_png(found.x, gateway.model.bounds)
        return Response(png, media_type="image/png")

    async def review_decide(call: Call) -> Response:
        payload = _payload(call)
        kind = _kind(call)
        reviewer = call.principal.key_id if call.principal is not None else "anonymous"
        decision = await _run(
            gateway.store.decide,
            kind=ItemKind(kind),
            item_id=_item_id(call),
            decision=Decision(payload["decision"]),
            reviewer=reviewer,
            reason=payload["reason"],
        )
        return JSONResponse(_jsonable(decision))

    async def audit(call: Call) -> Response:
        client = call.request.query_params.get("client")
        events = await _run(gateway.store.audit_log, client=client, limit=_limit(call))
        return JSONResponse({"events": [_jsonable(event) for event in events]})

    async def metrics(call: Call) -> Response:
        counts = await _run(gateway.store.counts)
        return PlainTextResponse(gateway.metrics.render(counts), media_type="text/plain; version=0.0.4")

    return {
        "predict": predict,
        "feedback": feedback,
        "submissions": submissions,
        "review.list": review_list,
        "review.item": review_item,
        "review.image": review_image,
        "review.decide": review_decide,
        "audit": audit,
        "metrics": metrics,
    }


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    """A store call on a worker thread, so the event loop keeps serving."""
    return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))


def _add_feedback(gateway: Gateway, client: str, payload: dict[str, Any]) -> dict[str, Any]:
    gateway.recorder.flush()  # the prediction may still be queued for writing
    prediction = gateway.store.get_prediction(payload["prediction_id"])
    if prediction is None or prediction.client != client:
        # The same answer for "no such prediction" and "someone else's": ids do not leak.
        raise RequestRejectedError(
            "unknown_prediction", "no prediction with this id was made for this client", status=404
        )
    feedback_id = gateway.store.add_feedback(
        client=client, prediction_id=payload["prediction_id"], correct=payload["correct"], label=payload["label"]
    )
    return {"feedback_id": feedback_id, "status": "quarantined"}


def _list_items(gateway: Gateway, kind: str, status: str | None, limit: int) -> list[dict[str, Any]]:
    store = gateway.store
    if kind == "flag":
        return [_jsonable(flag) for flag in store.list_flags(open_only=status in (None, "open"), limit=limit)]
    if status is not None and status not in _ITEM_STATUSES:
        raise RequestRejectedError("bad_query", f"{kind} status must be one of {sorted(_ITEM_STATUSES)}", status=422)
    chosen = ItemStatus(status) if status is not None else None
    if kind == "feedback":
        return [_jsonable(item) for item in store.list_feedback(status=chosen, limit=limit)]
    return [_jsonable(item) for item in store.list_submissions(status=chosen, limit=limit)]


def render_input_png(x: np.ndarray, bounds: tuple[float, float]) -> bytes:
    """A stored input as a PNG a reviewer can look at: (C, H, W) images as such, anything else as a strip."""
    low, high = bounds
    scaled = np.clip((np.asarray(x, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    pixels = (scaled * 255.0).round().astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3):
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    else:
        image = Image.fromarray(pixels.reshape(1, -1))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jsonable(value: Any) -> dict[str, Any]:
    """A store record as JSON: times in ISO 8601, arrays left out (served as images instead)."""
    out: dict[str, Any] = {}
    for key, item in asdict(value).items():
        if isinstance(item, np.ndarray):
            continue
        if hasattr(item, "isoformat"):
            item = item.isoformat()
        elif hasattr(item, "value") and not isinstance(item, (int, float, str)):
            item = item.value
        elif isinstance(item, tuple):
            item = list(item)
        out[key] = item
    return out


def _payload(call: Call) -> dict[str, Any]:
    if call.payload is None:
        raise RequestRejectedError("bad_body", "the request body is missing", status=422)
    return call.payload


def _kind(call: Call) -> str:
    kind = call.request.path_params.get("kind", "")
    if kind not in _KINDS:
        raise RequestRejectedError(
            "not_found", f"unknown review queue {kind[:40]!r}; expected {sorted(_KINDS)}", status=404
        )
    return _KINDS[kind]


def _item_id(call: Call) -> str:
    item_id = str(call.request.path_params.get("item_id", ""))
    if len(item_id) != 32 or any(ch not in "0123456789abcdef" for ch in item_id):
        raise RequestRejectedError("not_found", "no such item", status=404)
    return item_id


def _limit(call: Call) -> int:
    text = call.request.query_params.get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise RequestRejectedError("bad_query", f"limit must be an integer in [1, 1000], got {text[:20]!r}", status=422)
    return int(text)
