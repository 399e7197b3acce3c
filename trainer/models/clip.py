"""A tiny CLIP for the shapes world: a CLIP text transformer and a small conv image encoder, trained contrastively.

Text side (CLIPTextModel's structure): token + position embeddings -> pre-LN transformer blocks with a causal mask ->
final LayerNorm = last_hidden_state (B, L, D). The pooled text feature is the state at the first EOS token (CLIP takes
the argmax id, which is the same position when EOS is the largest id and nothing follows it but padding).
last_hidden_state is the frozen conditioning of every diffusion teacher, and what text_encoder.onnx computes.

Image side: conv stages down to 4x4, flattened (so positions, e.g. left/right, survive), then a linear projection.
Its embedding gives the CLIP score and the FID features of the evaluation.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trainer.checkpoint import load_checkpoint


@dataclass
class ClipArgs:
    vocab_size: int = 49408
    eos_token_id: int = 49407
    max_length: int = 32  # L
    width: int = 128  # D, the hidden size of last_hidden_state
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    embed_dim: int = 128  # the joint image-text embedding
    image_channels: list = field(default_factory=lambda: [32, 64, 128, 128])  # at 32, 16, 8, 4 px
    image_size: int = 64


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, causal_mask):  # x (B, L, D), causal_mask (L, L) with -inf above the diagonal
        batch, length, width = x.shape
        q, k, v = (proj(x).reshape(batch, length, self.heads, width // self.heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, heads, L, d)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(width // self.heads)) + causal_mask
        z = torch.matmul(scores.softmax(dim=-1), v)  # (B, heads, L, d)
        return self.out_proj(z.transpose(1, 2).reshape(batch, length, width))


class EncoderLayer(nn.Module):
    def __init__(self, width, heads, mlp_ratio):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width)
        self.self_attn = CausalSelfAttention(width, heads)
        self.layer_norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x, causal_mask):
        x = x + self.self_attn(self.layer_norm1(x), causal_mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipTextModel(nn.Module):
    """input_ids int64 (B, L) -> last_hidden_state float32 (B, L, D)."""

    def __init__(self, args: ClipArgs):
        super().__init__()
        self.args = args
        self.token_embedding = nn.Embedding(args.vocab_size, args.width)
        self.position_embedding = nn.Embedding(args.max_length, args.width)
        self.layers = nn.ModuleList(EncoderLayer(args.width, args.heads, args.mlp_ratio) for _ in range(args.layers))
        self.final_layer_norm = nn.LayerNorm(args.width)
        mask = torch.full((args.max_length, args.max_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.01)

    def forward(self, input_ids):
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)  # (B, L, D)
        mask = self.causal_mask[:length, :length]
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


def eos_positions(input_ids, eos_token_id):
    """Index of the first EOS token of each row (B,)."""
    return (input_ids == eos_token_id).int().argmax(dim=1)


class ClipImageModel(nn.Module):
    """images (B, 3, 64, 64) in [-1, 1] -> image features (B, embed_dim), before normalisation."""

    def __init__(self, args: ClipArgs):
        super().__init__()
        layers, in_channels = [], 3
        for out_channels in args.image_channels:  # each stage halves the resolution
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.GroupNorm(8, out_channels),
                       nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.GroupNorm(8, out_channels),
                       nn.SiLU()]
            in_channels = out_channels
        self.stages = nn.Sequential(*layers)
        side = args.image_size // 2 ** len(args.image_channels)
        self.proj = nn.Linear(in_channels * side * side, args.embed_dim)

    def forward(self, images):
        return self.proj(self.stages(images).flatten(1))  # (B, C, s, s) -> (B, C*s*s) -> (B, E)


class Clip(nn.Module):
    def __init__(self, args: ClipArgs):
        super().__init__()
        self.args = args
        self.text_model = ClipTextModel(args)
        self.text_projection = nn.Linear(args.width, args.embed_dim, bias=False)
        self.vision_model = ClipImageModel(args)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, input_ids):
        """(B, L) -> L2-normalised text embeddings (B, E)."""
        hidden = self.text_model(input_ids)  # (B, L, D)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device),
                        eos_positions(input_ids, self.args.eos_token_id)]  # (B, D)
        return F.normalize(self.text_projection(pooled), dim=-1)

    def encode_image(self, images):
        """(B, 3, 64, 64) in [-1, 1] -> L2-normalised image embeddings (B, E)."""
        return F.normalize(self.vision_model(images), dim=-1)

    def forward(self, images, input_ids, negative_input_ids=None):
        """Symmetric contrastive loss over the batch's (image, caption) pairs.

        negative_input_ids (B, L): optional hard negatives, row i a caption that is false of image i (e.g. one colour
        changed, or left and right swapped). Each joins image i's row as one more wrong answer, so the text encoder
        must tell apart captions that differ in one word.
        """
        image_embeds = self.encode_image(images)  # (B, E)
        text_embeds = self.encode_text(input_ids)  # (B, E)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits_per_image = scale * image_embeds @ text_embeds.t()  # (B, B)
        targets = torch.arange(images.shape[0], device=images.device)
        loss_text = F.cross_entropy(logits_per_image.t(), targets)
        if negative_input_ids is not None:
            negative_logits = scale * (image_embeds * self.encode_text(negative_input_ids)).sum(-1, keepdim=True)
            logits_per_image = torch.cat([logits_per_image, negative_logits], dim=1)  # (B, B + 1)
        loss_image = F.cross_entropy(logits_per_image, targets)
        return (loss_image + loss_text) / 2


def load_clip(path, device="cpu"):
    """Clip in eval mode from a checkpoint with model_args and model.

    clip.text_model(input_ids) -> last_hidden_state (B, L, D): the teachers' conditioning."""
    checkpoint = load_checkpoint(path, device)
    clip = Clip(ClipArgs(**checkpoint["model_args"]))
    clip.load_state_dict(checkpoint["model"])
    return clip.to(device).eval()
