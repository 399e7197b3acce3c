"""snoopi-serve's trainer: the shapes world, tiny CLIP, VAE, teachers, PG-SB distillation and the model-package export
(trainer/README.md). Every `python3 -m trainer.<module>` imports this package first, before torch."""
import os


def _use_avx512_blas_kernels():
    """Debian's OpenBLAS does not recognise these Xeons and falls back to generic kernels: matrix products far slower
    than its SkylakeX kernels on the same cores (trainer/README.md, Framework: BLAS on this machine). OpenBLAS reads
    OPENBLAS_CORETYPE once, when torch loads it, so it is set here, before any trainer module imports torch. A value
    already in the environment wins; CPUs without AVX-512 keep OpenBLAS's own choice."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return
    if " avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


_use_avx512_blas_kernels()
