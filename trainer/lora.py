"""LoRA on the attention projections of a backbone: the LoRA teacher of Variational Score Distillation.

    lora_teacher = copy.deepcopy(teacher)
    adapters = add_lora(lora_teacher, rank=16, alpha=16.0)   # nn.ModuleDict of the adapters, the only trainable part
    optimizer = torch.optim.AdamW(adapters.parameters(), lr=1e-3)

Every to_q, to_k, to_v and to_out[0] of the attn1 (self) and attn2 (cross) attention modules becomes a LoraLinear:
y = W x + b + (alpha / rank) * up(down(x)), with down (rank x in) initialised like nn.Linear and up (out x rank)
zero, so the model starts exactly equal to the base (peft and diffusers initialise the same way). The base weights are
frozen; only the adapters train. Merging into the base is not needed: the LoRA teacher is never exported.
"""
import math

from torch import nn

from trainer.models.attention import Attention

ATTENTION_NAMES = ("attn1", "attn2")
PROJECTIONS = ("to_q", "to_k", "to_v")  # plus to_out[0]


class LoraAdapter(nn.Module):
    """The low-rank update (alpha / rank) * up(down(x)) of one Linear; up starts at zero."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.scale = alpha / rank
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # nn.Linear's own init
        nn.init.zeros_(self.up.weight)

    def forward(self, x):  # (..., in) -> (..., out)
        return self.up(self.down(x)) * self.scale


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a LoraAdapter."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.adapter = LoraAdapter(base.in_features, base.out_features, rank, alpha)

    def forward(self, x):
        return self.base(x) + self.adapter(x)


def add_lora(model: nn.Module, rank: int, alpha: float) -> nn.ModuleDict:
    """Freeze `model` and put a LoraLinear on every projection of its attn1/attn2 modules, in place.

    Returns the adapters as an nn.ModuleDict keyed by their projection's path (dots as "-"): the trainable
    parameters, and a state dict that holds the LoRA weights only (what a checkpoint needs besides the teacher)."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    device = next(model.parameters()).device
    model.requires_grad_(False)
    adapters = nn.ModuleDict()
    attentions = [(name, module) for name, module in model.named_modules()
                  if name.split(".")[-1] in ATTENTION_NAMES and isinstance(module, Attention)]
    if not attentions:
        raise ValueError("model has no attention modules named attn1 or attn2")
    for name, attention in attentions:
        for projection in PROJECTIONS:
            wrapped = LoraLinear(getattr(attention, projection), rank, alpha)
            setattr(attention, projection, wrapped)
            adapters[f"{name}.{projection}".replace(".", "-")] = wrapped.adapter
        wrapped = LoraLinear(attention.to_out[0], rank, alpha)
        attention.to_out[0] = wrapped
        adapters[f"{name}.to_out.0".replace(".", "-")] = wrapped.adapter
    return adapters.to(device)

