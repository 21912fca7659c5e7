"""A model registry on disk: numbered versions (safetensors + manifest), the decision behind each, promotion, rollback.

Layout::

    root/versions/v0001/model.safetensors   the weights (never a pickle)
    root/versions/v0001/manifest.json       factory, shapes, digest, parent, the gate decision
    root/history.jsonl                      promotions and rollbacks, append-only; the last names the current one

Only a version whose recorded gate decision passed can be promoted, except the first (the
baseline, which has nothing to be compared with).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.errors import InvalidInputError, NotFoundError
from bastion.gate.gate import GateDecision, model_digest
from bastion.models.load import load_torch_model
from bastion.models.torch import TorchClassifier

__all__ = ["ModelRegistry", "ModelVersion", "decision_to_json"]


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: how to rebuild it and why it exists."""

    version: str
    created: str  # ISO 8601, UTC
    factory: str  # "package.module:callable" building the nn.Module the weights fit
    input_shape: tuple[int, ...]
    num_classes: int
    bounds: tuple[float, float]
    digest: str
    parent: str | None
    passed: bool | None  # the gate decision's verdict; None for a baseline registered without one
    decision: dict[str, Any] | None
    note: str = ""


class ModelRegistry:
    """Versions under ``root``; safe to read while another process registers (writes are atomic renames)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def register(
        self, model: TorchClassifier, *, factory: str, decision: GateDecision | None = None, note: str = ""
    ) -> ModelVersion:
        """Store ``model`` as a new version (not yet current) with the decision that judged it."""
        from safetensors.torch import save_file

        current = self.current()
        version = ModelVersion(
            version=f"v{len(self.versions()) + 1:04d}",
            created=datetime.now(UTC).isoformat(),
            factory=factory,
            input_shape=tuple(model.input_shape),
            num_classes=int(model.num_classes),
            bounds=(float(model.bounds[0]), float(model.bounds[1])),
            digest=model_digest(model),
            parent=current.version if current else None,
            passed=None if decision is None else decision.passed,
            decision=None if decision is None else decision_to_json(decision),
            note=note,
        )
        folder = self.root / "versions" / version.version
        staging = folder.with_name(f".{version.version}.{os.getpid()}")
        staging.mkdir(parents=True)
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model.module.state_dict().items()}
        save_file(weights, str(staging / "model.safetensors"))
        (staging / "manifest.json").write_text(json.dumps(asdict(version), indent=2), encoding="utf-8")
        staging.rename(folder)
        return version

    def versions(self) -> list[ModelVersion]:
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        return [self._read(path.name) for path in sorted(folder.iterdir()) if path.name.startswith("v")]

    def get(self, version: str) -> ModelVersion:
        if not (self.root / "versions" / version / "manifest.json").is_file():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFoundError(f"no model version {version!r} in {self.root}; registered: {known}")
        return self._read(version)

    def current(self) -> ModelVersion | None:
        events = self.history()
        return self.get(events[-1]["version"]) if events else None

    def promote(self, version: str, *, reason: str = "") -> ModelVersion:
        """Make ``version`` current; refused unless its gate decision passed (or it is the first baseline)."""
        chosen = self.get(version)
        if chosen.passed is False:
            raise InvalidInputError(f"{version} failed its gate decision and cannot be promoted")
        if chosen.passed is None and self.current() is not None:
            raise InvalidInputError(
                f"{version} has no gate decision; only the first (baseline) version may be promoted without one"
            )
        self._append({"event": "promote", "version": version, "reason": reason})
        return chosen

    def rollback(self, *, reason: str = "") -> ModelVersion:
        """Make the previously current version current again."""
        events = self.history()
        currents = [event["version"] for event in events]
        if len(currents) < 2:
            raise InvalidInputError("nothing to roll back to: fewer than two versions were ever current")
        previous = next(v for v in reversed(currents[:-1]) if v != currents[-1])
        self._append({"event": "rollback", "version": previous, "reason": reason, "from": currents[-1]})
        return self.get(previous)

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def load(self, version: str | None = None, *, device: str = "cpu") -> TorchClassifier:
        """The weights of ``version`` (default: the current one) in the module its factory builds."""
        chosen = self.get(version) if version is not None else self.current()
        if chosen is None:
            raise NotFoundError(f"no current model in {self.root}: promote a version first")
        return load_torch_model(
            self.root / "versions" / chosen.version / "model.safetensors",
            input_shape=chosen.input_shape,
            bounds=chosen.bounds,
            factory=chosen.factory,
            num_classes=chosen.num_classes,
            device=device,
        )

    def _read(self, version: str) -> ModelVersion:
        raw = json.loads((self.root / "versions" / version / "manifest.json").read_text(encoding="utf-8"))
        raw["input_shape"] = tuple(raw["input_shape"])
        raw["bounds"] = tuple(raw["bounds"])
        return ModelVersion(**raw)

    def _append(self, event: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        event = {**event, "time": datetime.now(UTC).isoformat()}
        with (self.root / "history.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(event) + "\n")
            log.flush()
            os.fsync(log.fileno())


def decision_to_json(decision: GateDecision) -> dict[str, Any]:
    """A gate decision as plain JSON values."""
    return {
        "passed": decision.passed,
        "checks": [asdict(check) for check in decision.checks],
        "current": decision.current,
        "candidate": decision.candidate,
        "test_set": decision.test_set,
        "policy": decision.policy.model_dump(),
        "time": decision.time.isoformat(),
        "seconds": decision.seconds,
    }
