import json

import torch
from torch import nn

from trainer import denoise_error, diffusion


class ExactOnZeroImages(nn.Module):
    """The perfect denoiser of x0 = 0, in either parameterization: x_t = s eps, so eps = x_t / s and v = a x_t / s."""

    def __init__(self, parameterization):
        super().__init__()
        self.args = type("Args", (), {"parameterization": parameterization})

    def forward(self, x_t, t, text_states):
        alpha_bar = diffusion.ALPHAS_CUMPROD[t].float().reshape(-1, 1, 1, 1)
        eps = x_t / (1 - alpha_bar).sqrt()
        return eps if self.args.parameterization == "eps" else alpha_bar.sqrt() * eps


class PredictsZero(ExactOnZeroImages):
    def forward(self, x_t, t, text_states):
        return torch.zeros_like(x_t)


def test_exact_models_score_zero_in_both_parameterizations_and_a_blind_one_scores_the_noise():
    x0, states = torch.zeros(200, 4, 16, 16), torch.zeros(200, 32, 128)
    models = {"eps": ExactOnZeroImages("eps"), "v": ExactOnZeroImages("v"), "blind": PredictsZero("eps")}
    rows = denoise_error.denoise_error(models, x0, states, seed=3)
    assert [row["t"] for row in rows] == [list(bucket) for bucket in denoise_error.BUCKETS]
    for row in rows:
        for name in ("eps", "v"):
            assert row[name]["eps_mse"] < 1e-9 and row[name]["x0_mse"] < 1e-9
        assert abs(row["blind"]["eps_mse"] - 1.0) < 0.02  # predicting eps = 0 misses the whole unit-variance noise
    # ... and its x0 = x_t / a misses by (s / a)^2 of it, which grows with t
    blind_x0 = [row["blind"]["x0_mse"] for row in rows]
    assert blind_x0 == sorted(blind_x0) and blind_x0[0] < 0.1 < 100 < blind_x0[-1]


def test_the_command_reads_the_committed_teacher_on_held_out_images(tmp_path, capsys):
    out = tmp_path / "rows.json"
    denoise_error.main(["models/base/teacher-unet-eps.pt", "--n", "8", "--threads", "1", "--json", str(out)])
    rows = json.loads(out.read_text())
    x0_errors = [row["models/base/teacher-unet-eps.pt"]["x0_mse"] for row in rows]
    assert len(rows) == 6 and x0_errors[0] < x0_errors[2] < x0_errors[5]
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| t | models/base/teacher-unet-eps.pt: eps / x0 MSE |" and table[2].startswith("| 0-99 | ")
