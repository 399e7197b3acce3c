from types import SimpleNamespace

import pytest
import torch

from trainer import diffusion


def test_schedule_is_stable_diffusions_scaled_linear():
    alpha_bar = diffusion.ALPHAS_CUMPROD
    assert alpha_bar.shape == (1000,)
    assert alpha_bar[0].item() == pytest.approx(1 - 0.00085)
    assert alpha_bar[999].item() == pytest.approx(0.0047, abs=1e-4)  # SD's alphas_cumprod[-1] = 0.00466


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_conversions_recover_x0_and_eps(parameterization):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 4, 16, 16, generator=g), torch.randn(5, 4, 16, 16, generator=g)
    t = torch.tensor([0, 10, 500, 990, 999])
    x_t = diffusion.q_sample(x0, t, eps)
    target = diffusion.training_target(parameterization, x0, eps, t)
    got_x0, got_eps = diffusion.x0_and_eps(parameterization, target, x_t, t)
    torch.testing.assert_close(got_x0, x0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(got_eps, eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_one_step_x0_is_the_conversion_at_999(parameterization):
    g = torch.Generator().manual_seed(1)
    z, prediction = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 4, 16, 16, generator=g)
    expected, _ = diffusion.x0_and_eps(parameterization, prediction, z, torch.full((3,), 999))
    torch.testing.assert_close(diffusion.one_step_x0(parameterization, prediction, z), expected)


def test_min_snr_weights():
    t = torch.tensor([0, 999])
    eps_weights = diffusion.min_snr_weight("eps", t, 5.0)
    v_weights = diffusion.min_snr_weight("v", t, 5.0)
    snr0 = (diffusion.ALPHAS_CUMPROD[0] / (1 - diffusion.ALPHAS_CUMPROD[0])).item()
    assert eps_weights[0].item() == pytest.approx(5.0 / snr0, rel=1e-4)
    assert eps_weights[1].item() == pytest.approx(1.0)  # SNR < gamma: plain eps loss
    assert v_weights[0].item() == pytest.approx(5.0 / (snr0 + 1), rel=1e-4)
    assert v_weights[1].item() < 1.0


def test_ddim_timesteps_trailing():
    steps = diffusion.ddim_timesteps(25)
    assert steps.tolist()[:3] == [999, 959, 919] and steps[-1].item() == 39 and len(steps) == 25


def test_seeded_noise_does_not_depend_on_the_batch():
    both = diffusion.seeded_noise([7, 8], (4, 16, 16))
    torch.testing.assert_close(both[1:], diffusion.seeded_noise([8], (4, 16, 16)))
    assert not torch.equal(both[0], both[1])


class OracleModel(torch.nn.Module):
    """Predicts the exact eps / v that leads to a fixed x0, whatever the text states."""

    def __init__(self, x0, parameterization):
        super().__init__()
        self.x0 = x0
        self.args = SimpleNamespace(parameterization=parameterization, in_channels=4, sample_size=16)

    def forward(self, x_t, t, text_states, negative=None, nasa_scale=None):
        x0 = self.x0.repeat(x_t.shape[0] // self.x0.shape[0], 1, 1, 1)
        a, s = diffusion._coefficients(t, x_t)
        eps = (x_t - a * x0) / s
        return eps if self.args.parameterization == "eps" else a * eps - s * x0


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_ddim_with_an_oracle_lands_on_its_x0(parameterization):
    x0 = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    model = OracleModel(x0, parameterization)
    text, uncond = torch.randn(2, 32, 128), torch.randn(1, 32, 128)
    out = diffusion.ddim_sample(model, text, uncond, guidance=4.0, steps=10, seed=0)
    torch.testing.assert_close(out, x0, rtol=1e-3, atol=1e-3)
    clipped = diffusion.ddim_sample(model, text, uncond, guidance=4.0, steps=10, seed=0, clip_x0=1.0)
    torch.testing.assert_close(clipped, x0.clamp(-1, 1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_one_step_generate_with_an_oracle(parameterization):
    x0 = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    noise = torch.randn(2, 4, 16, 16)
    out = diffusion.one_step_generate(OracleModel(x0, parameterization), noise, torch.randn(2, 32, 128))
    torch.testing.assert_close(out, x0, rtol=1e-3, atol=1e-3)


def test_cfg_combines_branches():
    class Linear(torch.nn.Module):
        def forward(self, x, t, states):
            return states.mean(dim=(1, 2)).reshape(-1, 1, 1, 1).expand_as(x)

    x, t = torch.zeros(2, 4, 16, 16), torch.tensor([5, 5])
    text, uncond = torch.full((2, 32, 128), 3.0), torch.full((2, 32, 128), 1.0)
    out = diffusion.cfg_prediction(Linear(), x, t, text, uncond, torch.tensor([0.0, 2.0]))
    assert out[0].unique().tolist() == [1.0] and out[1].unique().tolist() == [5.0]
