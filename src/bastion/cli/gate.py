"""``bastion gate`` and ``bastion registry``: judge a candidate model on trusted data, keep versions, roll back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.common import err_console, out_console
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, ThresholdError
from bastion.gate import GateDecision, ModelRegistry
from bastion.models.interface import Classifier
from bastion.models.torch import TorchClassifier

__all__ = ["gate_command", "registry_app", "retrain_command"]

registry_app = typer.Typer(help="The model registry: versions, promotion, rollback.", no_args_is_help=True)
RegistryOption = Annotated[Path, typer.Option("--registry", help="The registry folder.")]


def gate_command(
    test: Annotated[str, typer.Option("--test", help="The trusted test set (a file or demo:NAME:test).")],
    candidate: Annotated[str | None, typer.Option(help="The candidate model file (or demo:NAME).")] = None,
    current: Annotated[
        str | None, typer.Option(help="The current model file (default: the registry's current).")
    ] = None,
    candidate_data: Annotated[
        str | None, typer.Option(help="The candidate's training data: scanned for poison; with --recipe, trained on.")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option(help="demo:NAME or module:function: trains the candidate on --candidate-data.")
    ] = None,
    factory: Annotated[str | None, typer.Option(help="module:function for safetensors model files.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Gate policy (TOML); the defaults otherwise.")] = None,
    registry: Annotated[
        Path | None, typer.Option("--registry", help="Register the candidate with its decision.")
    ] = None,
    promote: Annotated[bool, typer.Option(help="With --registry: promote the candidate if it passes.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the candidate's training.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the decision as JSON here.")] = None,
) -> None:
    """Run the retraining gate; exit 0 when the candidate passes, 10 when a check fails."""
    from bastion.data.loaders import load_data
    from bastion.gate import decision_to_json, load_policy, run_gate
    from bastion.training import TorchRecipe, load_recipe

    trusted = load_data(test)
    chosen_policy = load_policy(policy)
    opened = ModelRegistry(registry) if registry is not None else None
    current_model = _current(current, opened, trusted, factory)
    training = load_data(candidate_data) if candidate_data is not None else None
    candidate_model: Classifier
    if recipe is not None:
        if training is None:
            raise ConfigError("--recipe trains the candidate on --candidate-data: give both")
        trainer = load_recipe(recipe)
        candidate_model = trainer.fit(training, seed=seed)
        factory_spec = trainer.factory_spec if isinstance(trainer, TorchRecipe) else None
    elif candidate is not None:
        candidate_model = _load(candidate, trusted, factory)
        factory_spec = factory
    else:
        raise ConfigError("give the candidate: --candidate FILE, or --candidate-data with --recipe")
    decision = run_gate(current_model, candidate_model, trusted, policy=chosen_policy, candidate_data=training)
    _print(decision)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(decision_to_json(decision), indent=2), encoding="utf-8")
    if opened is not None:
        _record(opened, candidate_model, factory_spec, decision, promote)
    if not decision.passed:
        names = ", ".join(check.name for check in decision.failed)
        raise ThresholdError(f"the gate refused the candidate: {names} failed")


def _current(spec: str | None, registry: ModelRegistry | None, trusted: Dataset, factory: str | None) -> Classifier:
    if spec is not None:
        return _load(spec, trusted, factory)
    if registry is not None:
        return registry.load()
    raise ConfigError("give the current model: --current FILE, or --registry with a promoted version")


def _load(spec: str, trusted: Dataset, factory: str | None) -> Classifier:
    from bastion.demo import demo_model
    from bastion.models.open import load_model

    if spec.startswith("demo:"):
        return demo_model(spec[5:])
    return load_model(spec, input_shape=trusted.input_shape, bounds=trusted.bounds, factory=factory)


def _record(
    registry: ModelRegistry, model: Classifier, factory: str | None, decision: GateDecision, promote: bool
) -> None:
    if not isinstance(model, TorchClassifier):
        raise ConfigError("only PyTorch candidates can be registered")
    if factory is None:
        raise ConfigError("registering a candidate needs --factory module:function (or a recipe that names one)")
    version = registry.register(model, factory=factory, decision=decision)
    err_console.print(f"registered {version.version} in {registry.root}")
    if promote and decision.passed:
        registry.promote(version.version, reason="passed the gate")
        err_console.print(f"promoted {version.version}")


def _print(decision: GateDecision) -> None:
    table = Table("check", "result", "value", "threshold", "detail", title="retraining gate")
    for check in decision.checks:
        result = "skipped" if check.skipped else ("[green]pass[/]" if check.passed else "[red]FAIL[/]")
        table.add_row(check.name, result, f"{check.value:.4f}", f"{check.threshold:.4f}", check.detail)
    out_console.print(table)
    out_console.print("[bold green]PASS[/]" if decision.passed else "[bold red]FAIL[/]")


@registry_app.command("list")
def registry_list(registry: RegistryOption) -> None:
    """The versions, which is current, and the decision behind each."""
    opened = ModelRegistry(registry)
    current = opened.current()
    table = Table("version", "created", "gate", "parent", "current")
    for version in opened.versions():
        verdict = {True: "passed", False: "failed", None: "baseline"}[version.passed]
        mark = "*" if current is not None and current.version == version.version else ""
        table.add_row(version.version, version.created[:19], verdict, version.parent or "-", mark)
    out_console.print(table)


@registry_app.command("add")
def registry_add(
    model: Annotated[str, typer.Argument(help="Model weights (safetensors) or demo:NAME.")],
    registry: RegistryOption,
    factory: Annotated[str | None, typer.Option(help="module:function building the module the weights fit.")] = None,
    input_shape: Annotated[str | None, typer.Option(help="One input's shape, e.g. 1,28,28 (weights files).")] = None,
    promote: Annotated[bool, typer.Option(help="Promote it (without a decision: only the first version).")] = False,
) -> None:
    """Register a model without a gate decision: the baseline a first deployment starts from."""
    from bastion.demo import demo_model
    from bastion.models.load import load_torch_model
    from bastion.training import demo_recipe

    if model.startswith("demo:"):
        loaded, factory = demo_model(model[5:]), demo_recipe(model[5:]).factory_spec
    elif factory is None or input_shape is None:
        raise ConfigError("registering a weights file needs --factory module:function and --input-shape")
    else:
        shape = tuple(int(part) for part in input_shape.split(",") if part.strip())
        loaded = load_torch_model(model, input_shape=shape, factory=factory)
    opened = ModelRegistry(registry)
    version = opened.register(loaded, factory=factory or "", note="baseline")
    if promote:
        opened.promote(version.version, reason="baseline")
    err_console.print(f"registered {version.version}{' (current)' if promote else ''}")


@registry_app.command("promote")
def registry_promote(version: str, registry: RegistryOption, reason: Annotated[str, typer.Option()] = "") -> None:
    """Make a version current (only one whose gate decision passed)."""
    ModelRegistry(registry).promote(version, reason=reason)
    err_console.print(f"{version} is current")


@registry_app.command("rollback")
def registry_rollback(registry: RegistryOption, reason: Annotated[str, typer.Option()] = "") -> None:
    """Make the previously current version current again."""
    version = ModelRegistry(registry).rollback(reason=reason)
    err_console.print(f"rolled back to {version.version}")


def retrain_command(
    registry: Annotated[
        Path, typer.Option("--registry", help="The model registry (its current model is the baseline).")
    ],
    recipe: Annotated[str, typer.Option(help="demo:NAME or module:function: the training recipe.")],
    trusted: Annotated[str, typer.Option(help="The trusted training set (RONI's base; always trained on).")],
    quiz: Annotated[str, typer.Option(help="The trusted quiz set RONI measures impact on (no overlap with the rest).")],
    test: Annotated[str, typer.Option(help="The trusted test set the gate judges on.")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway configuration: where its store is.")
    ] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL (overrides the configuration's).")] = None,
    include: Annotated[
        str, typer.Option(help="approved (reviewed items only) or all (quarantined items too).")
    ] = "approved",
    policy: Annotated[Path | None, typer.Option(help="Gate policy (TOML).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Retrain on the gateway's quarantined data: RONI per client, the recipe, the gate; promote only on a pass."""
    from bastion.data.loaders import load_data
    from bastion.gate import load_policy
    from bastion.gate.retrain import retrain
    from bastion.gateway.config import load_config
    from bastion.gateway.store import Store
    from bastion.training import load_recipe

    if include not in ("approved", "all"):
        raise ConfigError(f"--include must be approved or all, got {include!r}")
    settings = load_config(config, overrides={"store.url": store} if store else None)
    with Store.open(settings.store.url) as opened:
        outcome = retrain(
            opened,
            ModelRegistry(registry),
            load_recipe(recipe),
            trusted=load_data(trusted),
            quiz=load_data(quiz),
            test=load_data(test),
            policy=load_policy(policy),
            include="all" if include == "all" else "approved",
            seed=seed,
        )
    err_console.print(
        f"{len(outcome.offered)} items offered, {len(outcome.used)} kept, {len(outcome.rejected)} rejected by RONI"
    )
    for item, reason in outcome.rejected[:20]:
        err_console.print(f"  rejected {item.kind} {item.item_id} from {item.client}: {reason}")
    if outcome.decision is not None:
        _print(outcome.decision)
    if outcome.version is not None:
        state = "promoted" if outcome.promoted else "registered, not promoted"
        err_console.print(f"{outcome.version.version} {state}")
    if outcome.decision is not None and not outcome.decision.passed:
        raise ThresholdError("the gate refused the retrained model; the current version stays")
