"""The diffusion process every backbone shares: schedule, noising, parameterizations, DDIM with CFG, one-step x0.

Schedule (contracts.md): Stable Diffusion's scaled-linear betas, beta_start 0.00085, beta_end 0.012, 1000 steps;
alpha_bar_t = prod(1 - beta); sigma_t^2 = 1 - alpha_bar_t. With a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t):
    x_t = a x0 + s eps          v = a eps - s x0          x0 = a x_t - s v          eps = s x_t + a v
CFG (docs/design/method.md): pred(x, t, y, kappa) = pred(x, t, "") + kappa * (pred(x, t, y) - pred(x, t, "")),
applied to the model's own output (eps or v: the conversions are linear in it, so this equals CFG on eps).
"""
import math
from typing import Optional, Sequence

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012
STUDENT_TIMESTEP = 999  # the one-step student is called once here, on pure noise


def alphas_cumprod(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """alpha_bar_t for t = 0 .. 999, float64 (1000,)."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


ALPHAS_CUMPROD = alphas_cumprod()


def _coefficients(t: torch.Tensor, like: torch.Tensor):
    """(a, s) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) for (B,) timesteps, shaped to broadcast over `like`."""
    alpha_bar = ALPHAS_CUMPROD.to(like.device)[t.long()].to(like.dtype)
    shape = (-1,) + (1,) * (like.dim() - 1)
    return alpha_bar.sqrt().reshape(shape), (1.0 - alpha_bar).sqrt().reshape(shape)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; t (B,)."""
    a, s = _coefficients(t, x0)
    return a * x0 + s * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The v-prediction target a eps - s x0."""
    a, s = _coefficients(t, x0)
    return a * noise - s * x0


def training_target(parameterization: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if parameterization == "eps":
        return noise
    if parameterization == "v":
        return velocity(x0, noise, t)
    raise ValueError(f"unknown parameterization {parameterization!r}")


def x0_and_eps(parameterization: str, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """The model's output at x_t -> (predicted x0, predicted eps)."""
    a, s = _coefficients(t, x_t)
    if parameterization == "eps":
        return (x_t - s * prediction) / a, prediction
    if parameterization == "v":
        return a * x_t - s * prediction, s * x_t + a * prediction
    raise ValueError(f"unknown parameterization {parameterization!r}")


def min_snr_weight(parameterization: str, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) for an MSE on the model's own target, (B,).

    The x0-MSE weight min(SNR, gamma) becomes min(SNR, gamma) / SNR on an eps target and
    min(SNR, gamma) / (SNR + 1) on a v target."""
    alpha_bar = ALPHAS_CUMPROD.to(t.device)[t.long()].float()
    snr = alpha_bar / (1.0 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    if parameterization == "eps":
        return clipped / snr
    if parameterization == "v":
        return clipped / (snr + 1.0)
    raise ValueError(f"unknown parameterization {parameterization!r}")


def one_step_x0(parameterization: str, prediction: torch.Tensor, noise: torch.Tensor,
                timestep: int = STUDENT_TIMESTEP) -> torch.Tensor:
    """The one-step student's image latent from its single prediction at t = T on pure noise z (SwiftBrush):
    eps: x0 = (z - sqrt(1 - alpha_bar_T) eps) / sqrt(alpha_bar_T);  v: x0 = sqrt(alpha_bar_T) z - sqrt(1 - alpha_bar_T) v.
    Python-float coefficients, so an ONNX export holds two constants and no gather."""
    alpha_bar = float(ALPHAS_CUMPROD[timestep])
    a, s = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    if parameterization == "eps":
        return (noise - s * prediction) / a
    if parameterization == "v":
        return a * noise - s * prediction
    raise ValueError(f"unknown parameterization {parameterization!r}")


def one_step_generate(model, noise: torch.Tensor, encoder_hidden_states: torch.Tensor,
                      negative_encoder_hidden_states: Optional[torch.Tensor] = None,
                      nasa_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One denoiser call at t = 999 -> image latent (B, C, h, w): what a student is, and what generator.onnx runs."""
    timestep = torch.full((noise.shape[0],), STUDENT_TIMESTEP, dtype=torch.long, device=noise.device)
    prediction = model(noise, timestep, encoder_hidden_states, negative_encoder_hidden_states, nasa_scale)
    return one_step_x0(model.args.parameterization, prediction, noise)


def seeded_noise(seeds: Sequence[int], shape: Sequence[int], device="cpu") -> torch.Tensor:
    """(len(seeds), *shape) standard normal noise, image i from its own torch generator seeded with seeds[i], so an
    image does not depend on the batch it is drawn in."""
    out = torch.empty((len(seeds), *shape))
    for i, seed in enumerate(seeds):
        out[i] = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed) % 2 ** 32))
    return out.to(device)


def ddim_timesteps(steps: int) -> torch.Tensor:
    """'trailing' spacing (as diffusers' timestep_spacing="trailing"): starts at 999, the student's timestep, e.g.
    25 steps -> 999, 959, ..., 39."""
    ratio = NUM_TRAIN_TIMESTEPS / steps
    return (torch.arange(NUM_TRAIN_TIMESTEPS, 0, -ratio).round() - 1).long()


def cfg_prediction(model, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor,
                   uncond_states: torch.Tensor, guidance) -> torch.Tensor:
    """pred("") + guidance * (pred(y) - pred("")), both branches in one batch. guidance: float or (B,)."""
    batch = x.shape[0]
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text_states, uncond_states]))
    cond, uncond = both[:batch], both[batch:]
    kappa = torch.as_tensor(guidance, dtype=x.dtype, device=x.device).reshape(-1, *(1,) * (x.dim() - 1))
    return uncond + kappa * (cond - uncond)


@torch.no_grad()
def ddim_sample(model, text_states: torch.Tensor, uncond_states: torch.Tensor, guidance: float, steps: int = 25,
                seed: int = 0, noise: Optional[torch.Tensor] = None, clip_x0: Optional[float] = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) with CFG -> image latents (B, C, h, w), scaled like the training latents.

    text_states (B, L, D); uncond_states (B, L, D) or (1, L, D): the empty prompt "" through tokenizer + text encoder.
    Noise: image i of the batch from seed + i (see seeded_noise), unless `noise` is given. clip_x0: clamp the
    predicted x0 to [-clip_x0, clip_x0] at every step (None: no clamping)."""
    args = model.args
    batch = text_states.shape[0]
    device = text_states.device
    if noise is None:
        noise = seeded_noise([seed + i for i in range(batch)], (args.in_channels, args.sample_size, args.sample_size),
                             device)
    uncond_states = uncond_states.expand(batch, -1, -1)
    x = noise
    timesteps = ddim_timesteps(steps).to(device)
    for i, step in enumerate(timesteps):
        t = step.expand(batch)
        prediction = cfg_prediction(model, x, t, text_states, uncond_states, guidance)
        x0, eps = x0_and_eps(args.parameterization, prediction, x, t)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            a, s = _coefficients(t, x)
            eps = (x - a * x0) / s
        if i + 1 < len(timesteps):
            a_prev, s_prev = _coefficients(timesteps[i + 1].expand(batch), x)
            x = a_prev * x0 + s_prev * eps
        else:
            x = x0  # alpha_bar_prev = 1 after the last step
    return x
