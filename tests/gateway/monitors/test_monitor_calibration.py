"""Calibration on benign traffic: the margin threshold and its rate, the k-NN threshold and its measured FPR."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import ConfigError, DataError
from bastion.gateway.monitors import (
    BoundaryCalibration,
    QueryCalibration,
    benign_streams,
    calibrate_boundary,
    calibrate_query,
    margins,
)
from bastion.gateway.monitors.calibrate import nearest_distinct
from bastion.gateway.monitors.query import stream_scores

MnistTest = tuple[np.ndarray, np.ndarray, np.ndarray]  # images, labels, probabilities


def test_the_margin_threshold_is_the_benign_quantile_and_its_rate_is_measured(
    boundary_calibration: BoundaryCalibration, mnist_test: MnistTest
) -> None:
    margin = margins(mnist_test[2])
    assert boundary_calibration.threshold == pytest.approx(np.quantile(margin, 0.05))
    assert boundary_calibration.population_rate == np.mean(margin < boundary_calibration.threshold)
    assert boundary_calibration.population_rate == pytest.approx(0.05, abs=0.002)
    assert (boundary_calibration.quantile, boundary_calibration.samples) == (0.05, 1000)


@pytest.mark.parametrize(
    ("probs", "quantile", "error", "message"),
    [
        (np.full(100, 0.5), 0.05, DataError, r"expected benign probabilities of shape \(n, num_classes >= 2\)"),
        (np.full((100, 2), 0.5), 0.0, ConfigError, "expected 0 < quantile < 1, got 0.0"),
        (np.full((10, 2), 0.5), 0.05, DataError, "expected at least 40 benign predictions for the 0.05 quantile"),
        (np.full((100, 2), np.nan), 0.05, DataError, "benign probabilities contain NaN or Inf"),
        (np.tile([[0.9, 0.1]], (100, 1)), 0.05, DataError, "the margins are tied"),
    ],
)
def test_unusable_benign_probabilities_are_refused(
    probs: np.ndarray, quantile: float, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        calibrate_boundary(probs, quantile=quantile)


def test_the_knn_threshold_flags_at_most_the_target_share_of_benign_streams(mnist_test: MnistTest) -> None:
    streams = benign_streams(mnist_test[0], clients=50, length=60, seed=3)
    cal = calibrate_query(streams, k=20, dim=64, buffer_size=1000, target_fpr=0.1, seed=0)
    lowest = np.sort([np.nanmin(stream_scores(s, k=20, dim=64, buffer_size=1000, seed=0)) for s in streams])
    assert cal.threshold == pytest.approx(lowest[4]), "the 0.1 quantile of 50 minima, rounded down to one"
    assert cal.measured_fpr == 4 / 50 <= cal.target_fpr
    assert (cal.streams, cal.stream_length, cal.k, cal.dim, cal.buffer_size, cal.seed) == (50, 60, 20, 64, 1000, 0)


def test_the_gateway_calibration_meets_its_target(query_calibration: QueryCalibration, mnist_test: MnistTest) -> None:
    assert query_calibration.streams == 1000 and query_calibration.stream_length == 100
    assert query_calibration.measured_fpr <= query_calibration.target_fpr == 0.001
    # Near-duplicates that link keys are closer than the k-NN threshold, and than (almost) any two
    # distinct benign test images.
    assert query_calibration.link_distance < 0.5 * query_calibration.threshold
    assert query_calibration.link_rate <= 0.001
    nearest = nearest_distinct(mnist_test[0], dim=128, seed=0)
    assert np.mean(nearest < query_calibration.link_distance) <= 0.001


def test_calibration_is_deterministic_under_its_seed(mnist_test: MnistTest) -> None:
    def calibrate(seed: int) -> QueryCalibration:
        streams = benign_streams(mnist_test[0], clients=20, length=40, seed=seed)
        return calibrate_query(streams, k=10, dim=32, buffer_size=100, target_fpr=0.05, seed=seed)

    assert calibrate(1) == calibrate(1)
    assert calibrate(1) != calibrate(2)


def test_streams_too_short_to_score_are_refused(mnist_test: MnistTest) -> None:
    streams = benign_streams(mnist_test[0], clients=5, length=15, seed=0)
    with pytest.raises(DataError, match="too few benign streams with more than k=20 distinct queries"):
        calibrate_query(streams, k=20, dim=32, buffer_size=100, seed=0)
    with pytest.raises(ConfigError, match="expected 0 < target_fpr < 1, got 0"):
        calibrate_query(streams, k=5, dim=32, buffer_size=100, target_fpr=0, seed=0)
    with pytest.raises(DataError, match=r"expected each benign stream of shape \(n >= 1, \*input_shape\)"):
        calibrate_query([np.zeros(4, np.float32)], k=5, dim=32, buffer_size=100, seed=0)


def test_benign_streams_draw_test_images_at_random_with_some_resent(mnist_test: MnistTest) -> None:
    x = mnist_test[0]

    def repeats(rate: float) -> int:
        streams = benign_streams(x, clients=50, length=100, repeat_rate=rate, seed=0)
        assert len(streams) == 50 and all(s.shape == (100, 1, 28, 28) for s in streams)
        return sum(100 - len(np.unique(s.reshape(100, -1), axis=0)) for s in streams)

    # Drawing 100 of 1000 images alone repeats about 5 per client; re-sending adds about 10 more.
    assert repeats(0.0) < 400 < repeats(0.1)
    first, again = benign_streams(x, clients=3, length=10, seed=7), benign_streams(x, clients=3, length=10, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    with pytest.raises(ConfigError, match="expected clients >= 1"):
        benign_streams(x, clients=0, length=10, seed=0)
