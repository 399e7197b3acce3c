"""One model family per file: clip.py (tiny CLIP), vae.py (autoencoder), unet.py and dit.py (diffusion backbones),
attention.py (attention with swappable processors, NASA). Each model takes its args as a dataclass; checkpoints
store those args (model_args) next to the weights."""
