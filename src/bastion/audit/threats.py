"""The threats of Microsoft's AI/ML threat model, each with a rule that decides its status for one gateway.

The catalogue follows "Threat Modeling AI/ML Systems and Dependencies" (A. Marshall, J. Parikh,
E. Kiciman, R. Shankar Siva Kumar; Microsoft, 2019,
https://learn.microsoft.com/en-us/security/engineering/threat-modeling-aiml), in its order; the
descriptions are Bastion's own. A rule reads a :class:`Posture` (the gateway's configuration and
what is known about its model and environment) and answers a :class:`ThreatStatus`:

``mitigated``
    every layer the rule asks for is on; the threat is harder, not impossible (no layer here
    makes evasion or label-only attacks impossible, and the map never claims so).
``partial``
    some layer addresses the threat, something it needs is missing (named in ``gaps``).
``open``
    nothing in this configuration addresses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # bastion.audit is imported by the model loaders, which the gateway and the gate import
    from bastion.gate.policy import GatePolicy
    from bastion.gateway.config import GatewayConfig, MonitorAction, OutputPolicy

__all__ = ["THREATS", "Posture", "Status", "Threat", "ThreatStatus", "assess_threat"]

Status = Literal["mitigated", "partial", "open"]

# Model formats whose loading runs no Python code of the file's author (bastion.models.open, .load), and why.
_SAFE_FORMATS = {
    "demo": "model trained here from bundled data, stored as safetensors",
    "safetensors": "weights in safetensors: no code runs when they are loaded",
    "onnx": "an ONNX graph: no Python code runs when it is loaded",
    "skops": "a skops file: only allowlisted types are built",
    "torchscript": "TorchScript: no Python code runs when it is loaded",
    "pytorch pickle checkpoint": "a state dict read by torch's weights-only unpickler",
}


@dataclass(frozen=True)
class Posture:
    """What the threat rules read: the configuration and facts about the model and the environment."""

    config: GatewayConfig
    gate_policy: GatePolicy
    model_format: str  # "demo", a ModelFormat value ("safetensors", "pickle", ...), or "missing"
    hardening: str | None  # the adversarial-training method the model's manifest names; None: not hardened
    dependencies_audited: bool
    vulnerable_on_path: tuple[str, ...]  # packages on the request path with an advisory
    vulnerable_elsewhere: tuple[str, ...]  # other installed packages with an advisory

    def guard(self, name: str) -> bool:
        """Whether guard ``name`` is in the configured stack."""
        return name in self.config.guards

    @property
    def client_output(self) -> OutputPolicy:
        """What a client sees of a prediction (labels only when the output guard is off)."""
        return self.config.output.client if self.guard("output_policy") else "label"

    @property
    def per_key_limits(self) -> tuple[str, ...]:
        """The per-key windows that apply (none when the rate-limit guard is off)."""
        return self.config.rate_limit.per_key if self.guard("rate_limit") else ()

    def monitor_on(self, name: Literal["boundary", "query"]) -> bool:
        """Whether monitor ``name`` watches predictions."""
        monitors = self.config.monitors
        settings = monitors.boundary if name == "boundary" else monitors.query
        return self.guard("monitors") and settings.enabled

    def integrity(self) -> Any:
        """The ``[integrity]`` section (issue 8, part 3), or None in a configuration that predates it."""
        return getattr(self.config, "integrity", None)


@dataclass(frozen=True)
class ThreatStatus:
    """A threat's status here: the layers that address it and what is still missing."""

    status: Status
    layers: tuple[str, ...]
    gaps: tuple[str, ...]


@dataclass(frozen=True)
class Threat:
    """One threat of the catalogue and the rule deciding its status."""

    key: str
    name: str
    description: str
    rule: Callable[[Posture], ThreatStatus] = field(repr=False, compare=False)


def assess_threat(threat: Threat, posture: Posture) -> ThreatStatus:
    """The status of ``threat`` under ``posture``."""
    return threat.rule(posture)


def _graded(layers: list[str], gaps: list[str], *, complete: bool) -> ThreatStatus:
    """``mitigated`` when the required layers are all on, ``partial`` when some layer is, ``open`` otherwise."""
    status: Status = "mitigated" if complete and layers else "partial" if layers else "open"
    return ThreatStatus(status=status, layers=tuple(layers), gaps=tuple(gaps))


# ---------------------------------------------------------------------------------------------
# Shared layers
# ---------------------------------------------------------------------------------------------


def _output_layer(posture: Posture) -> str | None:
    output = posture.config.output
    shown = {
        "label": "clients see labels only",
        "rounded": f"clients see scores rounded to {output.decimals} decimals",
        "top_k": f"clients see the top {output.top_k} classes with rounded scores",
        "scores": None,
    }[posture.client_output]
    return f"output policy: {shown}" if shown else None


def _rate_layer(posture: Posture) -> str | None:
    limits = posture.per_key_limits
    return f"per-key rate limits ({', '.join(limits)})" if limits else None


def _detector_layer(posture: Posture) -> str | None:
    if not posture.monitor_on("query"):
        return None
    return f"query-attack detector (action {posture.config.monitors.query.action!r})"


def _boundary_layer(posture: Posture) -> str | None:
    if not posture.monitor_on("boundary"):
        return None
    return f"boundary-proximity monitor (action {posture.config.monitors.boundary.action!r})"


def _present(*layers: str | None) -> list[str]:
    return [layer for layer in layers if layer is not None]


def _query_gaps(posture: Posture) -> list[str]:
    gaps = []
    if posture.client_output == "scores":
        gaps.append("clients see full probability vectors")
    if not posture.per_key_limits:
        gaps.append("no per-key rate limit")
    elif posture.config.rate_limit.storage.startswith("memory://"):
        gaps.append("rate limits are counted per process (memory://); several processes multiply them")
    if not posture.monitor_on("query"):
        gaps.append("no query-attack detector")
    elif posture.config.monitors.query.action == "flag":
        gaps.append("the query detector only flags: a reviewer has to act on it")
    if not posture.guard("auth"):
        gaps.append("auth guard off: limits and monitors see addresses, not keys")
    return gaps


# ---------------------------------------------------------------------------------------------
# One rule per threat
# ---------------------------------------------------------------------------------------------


def _perturbation(posture: Posture) -> ThreatStatus:
    low, high = posture.config.model.bounds
    hardened = f"adversarial training ({posture.hardening}, per the model's manifest)" if posture.hardening else None
    output = _output_layer(posture)
    layers = _present(hardened, _boundary_layer(posture), _detector_layer(posture), output)
    gaps = ["no layer stops evasion: measure what is left with `bastion assess`"]
    if not posture.hardening:
        gaps.append("the model is not adversarially trained (no hardening manifest): transfer attacks need few queries")
    bounds = f"validation: inputs finite and within the model's bounds [{low:g}, {high:g}]"
    if layers:  # the bounds stop no perturbation that stays in range, so they never count on their own
        layers.insert(0, bounds)
    else:
        gaps.insert(0, f"only {bounds}, which any in-range perturbation passes")
    return _graded(layers, gaps, complete=False)


def _poisoning(posture: Posture) -> ThreatStatus:
    policy = posture.gate_policy
    layers = [
        "quarantine: feedback and submissions never reach training unreviewed by default",
        "review queue (reviewers approve or reject each item)",
        "RONI per client in `bastion retrain` (a client's data is kept only if it does not hurt a trusted quiz set)",
        f"retraining gate (accuracy may drop at most {policy.max_accuracy_drop:g}, a class at most "
        f"{policy.max_class_drop:g}); promotion only on a pass, rollback kept",
    ]
    if any(action == "omit" for action in _monitor_actions(posture)):
        layers.append("monitors with action 'omit' keep flagged clients' data out of training")
    gaps = ["`bastion retrain --include all` also takes items still in quarantine"]
    if not posture.guard("auth"):
        gaps.insert(0, "auth guard off: anyone may submit data, and RONI judges addresses instead of clients")
    return _graded(layers, gaps, complete=posture.guard("auth"))


def _inversion(posture: Posture) -> ThreatStatus:
    layers = _present(_output_layer(posture), _rate_layer(posture))
    gaps = [] if posture.client_output == "label" else ["clients see scores, which confidence-based inversion uses"]
    if not posture.per_key_limits:
        # Label-only inversion exists (Kahla et al. 2022): it needs many queries, which limits deny.
        gaps.append("no per-key rate limit: label-only inversion needs only enough queries")
    return _graded(layers, gaps, complete=posture.client_output == "label" and bool(posture.per_key_limits))


def _membership(posture: Posture) -> ThreatStatus:
    layers = _present(_output_layer(posture), _rate_layer(posture), _detector_layer(posture))
    gaps = _query_gaps(posture)
    gaps.append("no differentially private training: label-only membership inference stays possible with queries")
    # Never better than partial: label-only attacks (Choquette-Choo et al. 2021) need only enough queries,
    # and nothing here bounds what the model itself memorised.
    return _graded(layers, gaps, complete=False)


def _stealing(posture: Posture) -> ThreatStatus:
    output = _output_layer(posture) if posture.client_output in ("label", "rounded") else None
    partial_output = _output_layer(posture) if posture.client_output == "top_k" else None
    layers = _present(output, partial_output, _rate_layer(posture), _detector_layer(posture))
    gaps = _query_gaps(posture)
    staff = [role for role in ("reviewer", "admin") if getattr(posture.config.output, role) == "scores"]
    if staff:
        gaps.append(f"{' and '.join(staff)} keys see full scores: keep them out of clients' hands")
    complete = output is not None and bool(posture.per_key_limits) and posture.monitor_on("query")
    return _graded(layers, gaps, complete=complete)


def _reprogramming(posture: Posture) -> ThreatStatus:
    auth = "authentication: every call needs a key" if posture.guard("auth") else None
    layers = _present(auth, _rate_layer(posture), _detector_layer(posture))
    gaps = ["nothing recognises an adversarial program: each answer is the model's ordinary answer"]
    return _graded(layers, gaps, complete=False)


def _physical(posture: Posture) -> ThreatStatus:
    gaps = [
        "the gateway sees only the captured input; nothing here tells a printed patch from a real object",
        "measure patch robustness with `bastion assess --patch`",
    ]
    if posture.hardening:
        gaps.append(f"{posture.hardening} trains against small L_p perturbations, which patches are not")
    return _graded([], gaps, complete=False)


def _supply_chain(posture: Posture) -> ThreatStatus:
    model = posture.config.model
    layers: list[str] = []
    gaps: list[str] = []
    if posture.model_format in _SAFE_FORMATS:
        layers.append(_SAFE_FORMATS[posture.model_format])
    elif posture.model_format == "pickle" and model.trust_pickle:
        layers.append("pickle scanned against an allowlist before it is loaded")
        gaps.append("trust_pickle: an allowlist gap would let the file run code")
    else:
        gaps.append(f"model format {posture.model_format!r} is not one Bastion loads without trusting it")
    if model.trust_model_file:
        gaps.append("trust_model_file: formats that can run code on load are accepted")
    integrity = posture.integrity()
    checked = integrity is not None and bool(integrity.enabled)
    required = checked and bool(integrity.required)
    if checked:
        layers.append("signed manifest of the configuration and model hashes checked at start")
        if not required:
            gaps.append("a missing manifest is only logged ([integrity] required = false): deleting it skips the check")
    else:
        gaps.append("no signed manifest is checked at start (`bastion config sign`, [integrity])")
    complete = posture.model_format in _SAFE_FORMATS and required and not model.trust_model_file
    gaps.append("where the weights and the training data came from is outside this map")
    return _graded(layers, gaps, complete=complete)


def _backdoors(posture: Posture) -> ThreatStatus:
    scan = posture.gate_policy.scan
    layers = [
        "quarantine and review: a reviewer sees each submitted input before it can be trained on",
    ]
    gaps = ["a backdoor already in the deployed weights is not looked for (files are scanned for code, not triggers)"]
    if scan is not None and scan.method != "none":
        layers.append(f"retraining gate: poison scan of the candidate's training data ({scan.method})")
    else:
        gaps.insert(0, "the gate policy runs no poison scan")
    return _graded(layers, gaps, complete=False)


def _dependencies(posture: Posture) -> ThreatStatus:
    if not posture.dependencies_audited:
        return ThreatStatus("open", (), ("no dependency audit was given: run `bastion audit`",))
    if posture.vulnerable_on_path:
        on_path = ", ".join(posture.vulnerable_on_path)
        return ThreatStatus(
            "open", ("dependency audit",), (f"known advisories for packages on the request path: {on_path}",)
        )
    if posture.vulnerable_elsewhere:
        elsewhere = ", ".join(posture.vulnerable_elsewhere)
        return ThreatStatus(
            "partial",
            ("dependency audit: no advisory for the packages on the request path",),
            (f"known advisories for other installed packages: {elsewhere}",),
        )
    return ThreatStatus("mitigated", ("dependency audit: no known advisory for the installed packages",), ())


def _monitor_actions(posture: Posture) -> list[MonitorAction]:
    monitors = posture.config.monitors
    actions = [monitors.boundary.action] if posture.monitor_on("boundary") else []
    return actions + ([monitors.query.action] if posture.monitor_on("query") else [])


_CATALOGUE = (
    Threat(
        "perturbation",
        "Adversarial perturbation",
        "Inputs changed slightly, often imperceptibly, so that the model answers what the attacker wants.",
        _perturbation,
    ),
    Threat(
        "poisoning",
        "Data poisoning",
        "Training data planted or mislabelled (here: through feedback and submissions) to degrade or steer retraining.",
        _poisoning,
    ),
    Threat(
        "inversion",
        "Model inversion",
        "Features of training examples reconstructed from the model's answers, above all its confidences.",
        _inversion,
    ),
    Threat(
        "membership",
        "Membership inference",
        "Whether a given record was in the training set, told apart from how the model answers on it.",
        _membership,
    ),
    Threat(
        "stealing",
        "Model stealing",
        "A functional copy of the model trained from its answers to the attacker's queries.",
        _stealing,
    ),
    Threat(
        "reprogramming",
        "Neural net reprogramming",
        "Crafted inputs that make the model do another task for the attacker, at the owner's expense.",
        _reprogramming,
    ),
    Threat(
        "physical",
        "Adversarial examples in the physical domain",
        "Printed patches or changed objects that fool the model through a camera or sensor.",
        _physical,
    ),
    Threat(
        "supply_chain",
        "Attacks on the ML supply chain",
        "Tampered pre-trained weights, model files or training data taken from third parties.",
        _supply_chain,
    ),
    Threat(
        "backdoors",
        "Backdoored models",
        "A hidden trigger trained into the model that makes it answer the attacker's class on demand.",
        _backdoors,
    ),
    Threat(
        "dependencies",
        "Exploited software dependencies",
        "Known vulnerabilities in the libraries that parse requests, decode inputs and load the model.",
        _dependencies,
    ),
)

# The explicit registry, in the order of Microsoft's list.
THREATS: dict[str, Threat] = {threat.key: threat for threat in _CATALOGUE}
