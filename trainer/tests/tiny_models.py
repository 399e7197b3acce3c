"""Random tiny CLIP, VAE and teachers in the formats of models/base/{clip,vae,teacher-<backbone>}.pt, for the tests of
the commands that read them (trainer/tests is on sys.path under pytest)."""
from dataclasses import asdict

import torch

from trainer.clip_tokenizer import DEFAULT_DIR, ClipTokenizer
from trainer.models.clip import Clip, ClipArgs
from trainer.models.vae import AutoencoderKL, VaeArgs
from trainer.sample import build_backbone

TINY_TEACHERS = {
    "unet-eps": {"block_channels": [16, 32], "attention_levels": [False, True], "attention_head_dim": 16,
                 "norm_groups": 8, "time_embed_dim": 32, "ff_mult": 1},
    "unet-v": {"block_channels": [16, 32], "attention_levels": [False, True], "attention_head_dim": 16,
               "norm_groups": 8, "time_embed_dim": 32, "ff_mult": 1},
    "dit": {"hidden_size": 32, "depth": 1, "heads": 2, "mlp_ratio": 1.0, "patch_size": 4},
}


def write_tiny_encoders(directory):
    """clip.pt and vae.pt in `directory`, seeded."""
    torch.manual_seed(0)
    tokenizer = ClipTokenizer.from_dir(DEFAULT_DIR)
    clip_args = ClipArgs(vocab_size=tokenizer.vocab_size, eos_token_id=tokenizer.eos_token_id, layers=1,
                         image_channels=[8, 8, 8, 8])
    torch.save({"model_args": asdict(clip_args), "model": Clip(clip_args).state_dict()}, directory / "clip.pt")
    vae_args = VaeArgs(block_out_channels=[8, 8, 8], decoder_layers_per_block=1)
    torch.save({"model_args": asdict(vae_args), "model": AutoencoderKL(vae_args).state_dict(), "scaling_factor": 2.0},
               directory / "vae.pt")
    return directory


def write_tiny_checkpoints(directory):
    """The encoders and a teacher-<backbone>.pt of each backbone in `directory`."""
    write_tiny_encoders(directory)
    for backbone, model_args in TINY_TEACHERS.items():
        teacher = build_backbone(backbone, model_args)
        with torch.no_grad():  # no zero-initialised layers, so that every output (and gradient) is nonzero
            for parameter in teacher.parameters():
                if not parameter.any():
                    parameter.normal_(0.0, 0.02)
        torch.save({"backbone": backbone, "model_args": teacher.model_args(), "model": teacher.state_dict(),
                    "step": 100, "config": {"backbone": backbone}}, directory / f"teacher-{backbone}.pt")
    return directory
