"""ES, reparameterization and their inverse-variance combination (Metz et al. 2019) on objectives with known
answers."""

import torch
from es_objectives import antithetic_samples, inverse_variance_combine, reparameterization_samples

from loptim.meta.es import mean_and_variance, sample_perturbations

SIGMA = 0.01


def _phi(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
    }


def _flat(params):
    return torch.cat([v.reshape(-1) for v in params.values()])


def test_antithetic_pairs_cancel_an_even_loss_exactly():
    phi = _phi()
    center = {k: v.clone() for k, v in phi.items()}

    def even(p):  # symmetric about phi: L(phi + e) == L(phi - e)
        return sum(((p[k] - center[k]) ** 2).sum() for k in p)

    eps = sample_perturbations(phi, SIGMA, 5, torch.Generator().manual_seed(1))
    for sample in antithetic_samples(even, phi, eps, SIGMA):
        for v in sample.values():
            assert torch.count_nonzero(v) == 0


def test_antithetic_estimate_of_a_linear_loss_is_eps_eps_T_grad_over_sigma2_and_averages_to_the_gradient():
    phi = _phi()
    c = _phi(seed=2)

    def linear(p):
        return sum((p[k] * c[k]).sum() for k in p)

    eps = sample_perturbations(phi, SIGMA, 4000, torch.Generator().manual_seed(3))
    samples = antithetic_samples(linear, phi, eps, SIGMA)
    grad = _flat(c)
    for e, s in list(zip(eps, samples))[:5]:
        e_flat = _flat(e)
        torch.testing.assert_close(_flat(s), e_flat * (e_flat @ grad) / SIGMA**2)
    mean, var = mean_and_variance(samples)
    standard_error = _flat(var).sqrt()
    assert ((_flat(mean) - grad).abs() < 4 * standard_error).all()  # within 4 standard errors per element


def test_es_and_reparameterization_agree_with_the_smoothed_quadratic_gradient():
    # L(phi) = phi^T A phi + b^T phi; E[L(phi + eps)] = L(phi) + sigma^2 tr(A), so its gradient is (A + A^T) phi + b.
    g = torch.Generator().manual_seed(4)
    a = torch.randn(10, 10, generator=g, dtype=torch.float64)
    b = torch.randn(10, generator=g, dtype=torch.float64)
    phi = {"x": torch.randn(10, generator=g, dtype=torch.float64)}

    def quadratic(p):
        return p["x"] @ a @ p["x"] + b @ p["x"]

    exact = (a + a.T) @ phi["x"] + b
    eps = sample_perturbations(phi, SIGMA, 3000, torch.Generator().manual_seed(5))
    es_mean, es_var = mean_and_variance(antithetic_samples(quadratic, phi, eps, SIGMA))
    assert ((es_mean["x"] - exact).abs() < 4 * es_var["x"].sqrt()).all()
    rp_mean, rp_var = mean_and_variance(reparameterization_samples(quadratic, phi, eps[:50]))
    assert ((rp_mean["x"] - exact).abs() < 4 * rp_var["x"].sqrt() + 1e-12).all()
    assert rp_var["x"].mean() < es_var["x"].mean()  # on a smooth loss, backprop is the low-variance estimator


def test_combination_weights_follow_inverse_variance_on_constructed_samples():
    # ES samples with variance 4x those of RP: the ES share is (1/4) / (1/4 + 1) = 0.2 per element.
    es = [{"w": torch.tensor([1.0 + 2 * d, 10.0 + 2 * d])} for d in (-1.0, 1.0)]
    rp = [{"w": torch.tensor([3.0 + d, 20.0 + d])} for d in (-1.0, 1.0)]
    combined = inverse_variance_combine(es, rp)
    torch.testing.assert_close(combined.grad["w"], 0.2 * torch.tensor([1.0, 10.0]) + 0.8 * torch.tensor([3.0, 20.0]))
    assert abs(combined.es_weight["w"] - 0.2) < 1e-6
    exploding = [{"w": torch.tensor([float("inf"), 1.0])}, {"w": torch.tensor([1.0, 2.0])}]
    fallback = inverse_variance_combine(es, exploding)
    assert float(fallback.grad["w"][0]) == 1.0  # a non-finite backprop estimate leaves ES alone
