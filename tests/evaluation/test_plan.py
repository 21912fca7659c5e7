"""Plans: presets, epsilons, attack choice, and the errors for each bad choice."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.evaluation.plan import DEFAULT_EPSILONS, PRESETS, make_plan


def test_presets_only_keep_attacks_that_fit_the_norm() -> None:
    plan = make_plan(preset="standard", norm="linf")
    names = [a.name for a in plan.attacks]
    assert "cw" not in names  # C&W is an L2 attack
    assert "pgd" in names
    l2 = make_plan(preset="standard", norm="l2")
    assert "cw" in [a.name for a in l2.attacks]


def test_default_epsilons_scale_with_the_input_range() -> None:
    plan = make_plan(norm="linf", bounds=(0.0, 255.0))
    assert plan.epsilons == tuple(e * 255.0 for e in DEFAULT_EPSILONS["linf"])


def test_epsilons_are_sorted_and_deduplicated() -> None:
    assert make_plan(epsilons=(0.3, 0.1, 0.3)).epsilons == (0.1, 0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "fast"}, r"unknown preset 'fast': expected one of quick, standard, thorough"),
        ({"norm": "l3"}, r"unknown norm 'l3': expected one of l1, l2, linf"),
        ({"epsilons": (-0.1,)}, r"expected eps > 0, got -0.1"),
        ({"epsilons": (0.0,)}, r"expected eps > 0, got 0.0"),
        ({"epsilons": (1.5,)}, r"expected eps <= the input range 1 for linf, got 1.5"),
        ({"attacks": ("nope",)}, r"unknown attack 'nope': expected one of .*fgsm.*pgd"),
        ({"attacks": ("cw",), "norm": "linf"}, r"attack 'cw' does not support the linf norm"),
        ({"n_examples": 0}, r"expected a number of examples > 0, got 0"),
        ({"batch_size": -3}, r"expected a batch size > 0, got -3"),
    ],
)
def test_bad_choices_name_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(**kwargs)  # type: ignore[arg-type]


def test_every_preset_attack_is_registered() -> None:
    from bastion.attacks.registry import ATTACKS

    for preset in PRESETS.values():
        for planned in preset:
            assert planned.name in ATTACKS
            planned.build()  # options are valid for the attack
