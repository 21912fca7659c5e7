"""Norms: projection, distance, random start and ascent, checked against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bastion.errors import ConfigError
from bastion.norms import L1, L2, Linf, Norm, get_norm

NORMS = [Linf(), L2(), L1()]
IDS = [n.name for n in NORMS]
RTOL = 1e-5

batches = st.tuples(st.integers(1, 4), st.integers(1, 8)).flatmap(
    lambda shape: arrays(np.float32, shape, elements=st.floats(-10, 10, width=32))
)
radii = st.floats(0.01, 5.0)


def size(norm: Norm, t: torch.Tensor) -> torch.Tensor:
    """Per-example norm of ``t`` (its distance from the origin)."""
    return norm.distance(t, torch.zeros_like(t))


def l1_reference(v: np.ndarray, eps: float) -> np.ndarray:
    """Euclidean projection onto the L1 ball by bisection on the soft threshold (no sorting)."""
    a = np.abs(v)
    if a.sum() <= eps:
        return v.copy()
    lo, hi = 0.0, float(a.max())
    for _ in range(200):
        theta = (lo + hi) / 2
        if np.maximum(a - theta, 0).sum() > eps:
            lo = theta
        else:
            hi = theta
    return np.sign(v) * np.maximum(a - (lo + hi) / 2, 0)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(v=batches, eps=radii)
def test_projection_lands_inside_the_ball(norm: Norm, v: np.ndarray, eps: float) -> None:
    p = norm.project(torch.from_numpy(v), eps)
    assert p.shape == v.shape and p.dtype == torch.float32
    # float32 round-off: subtracting the L1 threshold loses ~1e-7 of the input's magnitude.
    slack = torch.from_numpy(np.abs(v).sum(axis=1)) * 2e-7
    assert bool((size(norm, p) <= eps * (1 + RTOL) + slack).all())


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(v=batches, eps=radii)
def test_projection_is_idempotent(norm: Norm, v: np.ndarray, eps: float) -> None:
    once = norm.project(torch.from_numpy(v), eps)
    twice = norm.project(once, eps)
    torch.testing.assert_close(twice, once, atol=1e-5 * max(eps, 1.0), rtol=1e-5)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(v=batches, eps=radii)
def test_points_inside_the_ball_do_not_move(norm: Norm, v: np.ndarray, eps: float) -> None:
    t = torch.from_numpy(v).double()
    inside = t * (0.99 * eps / size(norm, t).clamp_min(1e-12))[:, None]
    assert torch.equal(norm.project(inside, eps), inside)


@settings(max_examples=100, deadline=None)
@given(v=batches, eps=radii)
def test_l1_projection_matches_bisection_reference(v: np.ndarray, eps: float) -> None:
    got = L1().project(torch.from_numpy(v).double(), eps).numpy()
    want = np.stack([l1_reference(row.astype(np.float64), eps) for row in v])
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize(
    "v",
    [[3.0, 3.0, 3.0], [5.0, 0.0, 0.0], [1.0, -1.0, 0.5, -0.5], [2.0], [0.0, 0.0, 4.0, -4.0]],
    ids=["ties", "one-hot", "signs", "one-feature", "zeros"],
)
def test_l1_projection_edge_cases(v: list[float]) -> None:
    t = torch.tensor([v], dtype=torch.float64)
    np.testing.assert_allclose(L1().project(t, 1.5).numpy()[0], l1_reference(np.array(v), 1.5), atol=1e-12)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_projection_is_the_closest_point_in_the_ball(norm: Norm) -> None:
    gen = torch.Generator().manual_seed(0)
    v = 3 * torch.randn(8, 6, generator=gen, dtype=torch.float64)
    eps = 1.0
    p = norm.project(v, eps)
    candidates = norm.random_start(v.repeat(500, 1), eps, gen).reshape(500, 8, 6)
    nearest = (candidates - v).norm(dim=2).min(dim=0).values
    assert bool(((p - v).norm(dim=1) <= nearest + 1e-12).all())


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_projection_with_per_example_eps(norm: Norm) -> None:
    v = torch.full((3, 1, 2, 2), 5.0)
    eps = torch.tensor([0.5, 1.0, 2.0])
    p = norm.project(v, eps)
    assert p.shape == v.shape
    torch.testing.assert_close(size(norm, p), eps)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_distance_matches_numpy(norm: Norm) -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(5, 1, 3, 3, generator=gen), torch.rand(5, 1, 3, 3, generator=gen)
    want = np.linalg.norm((a - b).reshape(5, -1).numpy(), ord=norm.p, axis=1)
    np.testing.assert_allclose(norm.distance(a, b).numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_random_start_is_inside_the_ball(norm: Norm) -> None:
    like = torch.zeros(200, 1, 4, 4)
    delta = norm.random_start(like, 0.3, torch.Generator().manual_seed(0))
    assert delta.shape == like.shape and delta.dtype == like.dtype
    assert bool((size(norm, delta) <= 0.3 * (1 + RTOL)).all())
    assert bool((size(norm, delta) > 0).all())


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_random_start_is_deterministic_under_a_seed(norm: Norm) -> None:
    like = torch.zeros(4, 10)
    first = norm.random_start(like, 1.0, torch.Generator().manual_seed(3))
    again = norm.random_start(like, 1.0, torch.Generator().manual_seed(3))
    other = norm.random_start(like, 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_random_start_with_per_example_eps(norm: Norm) -> None:
    eps = torch.tensor([0.1, 1.0, 10.0])
    delta = norm.random_start(torch.zeros(3, 50), eps, torch.Generator().manual_seed(0))
    assert bool((size(norm, delta) <= eps * (1 + RTOL)).all())
    assert bool((size(norm, delta) > eps / 10).all())


@pytest.mark.parametrize("norm", [L2(), L1()], ids=["l2", "l1"])
def test_random_start_is_uniform_in_the_ball(norm: Norm) -> None:
    # Uniform in a d-dimensional ball of radius r: P(|z| <= t) = (t / r)^d, so E|z| = r * d / (d + 1).
    d = 4
    delta = norm.random_start(torch.zeros(20000, d), 1.0, torch.Generator().manual_seed(0))
    assert abs(float(size(norm, delta).mean()) - d / (d + 1)) < 0.01


def test_linf_random_start_is_uniform_per_feature() -> None:
    delta = Linf().random_start(torch.zeros(5000, 8), 0.5, torch.Generator().manual_seed(0))
    assert abs(float(delta.abs().mean()) - 0.25) < 0.005
    assert abs(float(delta.mean())) < 0.005


@pytest.mark.parametrize(("norm", "dual_p"), [(Linf(), 1.0), (L2(), 2.0), (L1(sparsity=1.0), float("inf"))])
@settings(max_examples=60, deadline=None)
@given(g=batches)
def test_ascent_has_unit_norm_and_attains_the_dual_norm(norm: Norm, dual_p: float, g: np.ndarray) -> None:
    grad = torch.from_numpy(g).double()
    nonzero = grad.abs().sum(dim=1) > 0
    step = norm.ascent(grad)
    assert step.shape == grad.shape
    torch.testing.assert_close(size(norm, step)[nonzero], torch.ones(int(nonzero.sum()), dtype=torch.float64))
    dual = torch.linalg.vector_norm(grad, ord=dual_p, dim=1)
    torch.testing.assert_close((step * grad).sum(dim=1), dual)


def test_l1_ascent_moves_the_top_share_of_coordinates() -> None:
    grad = torch.arange(1.0, 201.0).reshape(1, 200)  # distinct magnitudes: no ties at the threshold
    step = L1(sparsity=0.95).ascent(grad)
    assert int((step != 0).sum()) == 10
    assert bool((step[0, -10:] == 0.1).all())
    torch.testing.assert_close(size(L1(), step), torch.ones(1))


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_ascent_of_a_zero_gradient_is_zero(norm: Norm) -> None:
    step = norm.ascent(torch.zeros(2, 5))
    assert torch.equal(step, torch.zeros(2, 5))


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_clip_respects_ball_and_bounds(norm: Norm) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 3, 3, generator=gen)
    x_adv = x + 2 * torch.randn(6, 1, 3, 3, generator=gen)
    clipped = norm.clip(x_adv, x, 0.5, (0.0, 1.0))
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert bool((norm.distance(clipped, x) <= 0.5 * (1 + RTOL)).all())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("linf", Linf), ("LINF", Linf), (" inf ", Linf), ("l2", L2), ("2", L2), ("L1", L1), ("1", L1)],
)
def test_get_norm_by_name_and_alias(name: str, expected: type[Norm]) -> None:
    assert type(get_norm(name)) is expected


def test_get_norm_returns_a_norm_as_it_is() -> None:
    custom = L1(sparsity=0.5)
    assert get_norm(custom) is custom
    assert str(get_norm("l2")) == "l2"


@pytest.mark.parametrize("name", ["l3", "", "euclid"])
def test_get_norm_lists_the_choices(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown norm {name!r}: expected one of l1, l2, linf"):
        get_norm(name)


@pytest.mark.parametrize("magnitude", [1e-20, 1e-30, 1e-44])
def test_l2_ascent_of_a_vanishing_float32_gradient_has_unit_norm(magnitude: float) -> None:
    # A confident model's cross-entropy gradient can be this small; its squares underflow in float32.
    grad = torch.full((1, 1, 4, 4), magnitude)
    step = L2().ascent(grad)
    torch.testing.assert_close(size(L2(), step), torch.ones(1))
    torch.testing.assert_close(step, torch.full_like(grad, 0.25))


@pytest.mark.parametrize("norm", NORMS, ids=IDS)
def test_an_empty_batch_passes_through(norm: Norm) -> None:
    empty = torch.zeros(0, 1, 2, 2)
    assert norm.project(empty, 1.0).shape == empty.shape
    assert norm.ascent(empty).shape == empty.shape
    assert norm.random_start(empty, 1.0).shape == empty.shape
    assert norm.clip(empty, empty, 1.0, (0.0, 1.0)).shape == empty.shape
    assert norm.distance(empty, empty).shape == (0,)
