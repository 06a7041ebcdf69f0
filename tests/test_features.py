"""Per-coordinate features (Metz et al. 2019): accumulators, per-tensor normalization, progress features."""

import math

import torch

from loptim.features import (
    MOMENTUM_DECAYS,
    TIMESCALES,
    accumulate,
    coordinate_features,
    normalize_per_tensor,
    segment_ids,
    time_features,
)


def test_accumulators_match_hand_computed_emas():
    grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
    momenta = torch.ones(len(MOMENTUM_DECAYS), 2, dtype=torch.float64)
    rms = torch.tensor([4.0, 0.0], dtype=torch.float64)
    new_m, new_v = accumulate(momenta, rms, grad)
    for i, b in enumerate(MOMENTUM_DECAYS):
        torch.testing.assert_close(new_m[i], torch.tensor([b + (1 - b) * 1.0, b - (1 - b) * 2.0], dtype=torch.float64))
    torch.testing.assert_close(new_v, torch.tensor([0.999 * 4 + 0.001, 0.004], dtype=torch.float64))


def test_per_tensor_normalization_gives_unit_rms_and_is_scale_invariant_per_tensor():
    g = torch.Generator().manual_seed(0)
    sizes = [6, 3, 11]
    segments = segment_ids(sizes)
    assert segments.tolist() == [0] * 6 + [1] * 3 + [2] * 11
    values = torch.randn(2, sum(sizes), generator=g, dtype=torch.float64)
    out = normalize_per_tensor(values, segments, sizes, eps=0.0)
    for start, size in zip([0, 6, 9], sizes):
        piece = out[:, start : start + size]
        torch.testing.assert_close(piece.pow(2).mean(1), torch.ones(2, dtype=torch.float64))
    scaled = values.clone()
    scaled[:, 6:9] *= 1000.0  # rescaling one tensor changes nothing after normalization
    torch.testing.assert_close(normalize_per_tensor(scaled, segments, sizes, eps=0.0), out)


def test_coordinate_features_shape_and_gradient_scale_invariance():
    g = torch.Generator().manual_seed(1)
    sizes = [50, 20]
    segments = segment_ids(sizes)
    grad = torch.randn(70, generator=g)
    param = torch.randn(70, generator=g)
    momenta = torch.zeros(len(MOMENTUM_DECAYS), 70)
    rms = torch.zeros(70)
    m1, v1 = accumulate(momenta, rms, grad)
    m2, v2 = accumulate(momenta, rms, 100.0 * grad)
    f1 = coordinate_features(grad, param, m1, v1, segments, sizes)
    f2 = coordinate_features(100.0 * grad, param, m2, v2, segments, sizes)
    assert f1.shape == (10, 70)
    # g and the momenta are linear in g, so normalization removes the scale, wherever the feature's mean square is
    # well above the eps of 1e-5 (after one step, m_0.99 and slower are ~1e-2 g or smaller and eps dominates them)
    gradient_rows = [0, 2, 3, 4]
    torch.testing.assert_close(f2[gradient_rows], f1[gradient_rows], rtol=2e-3, atol=2e-3)  # eps / ms <= 1e-3
    torch.testing.assert_close(f2[1], f1[1])  # the parameter feature does not see the gradient


def test_time_features_known_values():
    t = time_features(10)
    assert t.shape == (len(TIMESCALES),)
    assert math.isclose(float(t[TIMESCALES.index(10)]), math.tanh(1.0), rel_tol=1e-6)
    assert math.isclose(float(t[0]), math.tanh(10.0), rel_tol=1e-6)
    assert float(time_features(0).abs().max()) == 0.0
