"""The output-policy guard: how much of the model's answer a role sees (full scores, rounded, top-k or the label).

Less output makes every attack harder: score-based attacks need scores, and rounding or top-k
starves gradient estimation; label-only answers leave only decision-based attacks. With this
guard switched off, predictions carry labels only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from starlette.responses import Response

from bastion.gateway.call import Call, Handler
from bastion.gateway.config import OutputConfig, OutputPolicy

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["OutputPolicyGuard", "shape_output"]


class OutputPolicyGuard:
    """Adds to the predict answer what the caller's role may see."""

    name = "output_policy"

    def __init__(self, gateway: Gateway) -> None:
        self.config = gateway.config.output

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        if call.endpoint == "predict" and call.probs is not None:
            policy: OutputPolicy = getattr(self.config, call.role, "label") if call.principal else self.config.client
            call.result.update(shape_output(call.probs, policy, self.config))
        return await call_next(call)


def shape_output(probs: np.ndarray, policy: OutputPolicy, config: OutputConfig) -> dict[str, object]:
    """The extra fields of a predict answer under ``policy`` (labels are always there)."""
    if policy == "scores":
        return {"scores": probs.tolist()}
    if policy == "rounded":
        return {"scores": np.round(probs, config.decimals).tolist()}
    if policy == "top_k":
        k = min(config.top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return {
            "top_k": [
                [{"label": int(c), "score": round(float(row[c]), config.decimals)} for c in top]
                for row, top in zip(probs, order, strict=True)
            ]
        }
    return {}
