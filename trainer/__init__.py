"""The shapes-world trainer. Importing it first names OpenBLAS's kernel for this CPU (before torch loads OpenBLAS)."""
import os

AVX512_FOR_SKYLAKEX = ("avx512f", "avx512bw", "avx512dq", "avx512vl")


def _choose_openblas_kernel():
    """Debian's OpenBLAS does not recognise these virtual AVX-512 CPUs and falls back to a kernel ~4x slower than its
    Skylake-X one (../shared/design/product.md, runtime facts: ~60 against ~257 GFLOP/s, results checked). Name that
    kernel when the CPU has every extension it uses and nobody chose one; elsewhere (MKL wheels, other CPUs) nothing
    changes. Effective only when trainer is imported before torch, as `python3 -m trainer.<module>` does."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return
    if all(flag in flags for flag in AVX512_FOR_SKYLAKEX):
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


_choose_openblas_kernel()
