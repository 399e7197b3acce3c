"""One thread count for a trainer command's CPU work: torch's intra-op threads and OpenBLAS's own thread pool.

Debian's torch calls OpenBLAS (the pthread build) for matrix products, and torch.set_num_threads does not reach
OpenBLAS's pool: at `threads` 1 a process still ran OpenBLAS on every core (126% CPU, trainer/README.md, Framework),
and with the Haswell kernels the split over threads changed the last bits of results, so a resumed run was not
bit-exact with an uninterrupted one."""
import ctypes

import torch


def _loaded_openblas():
    """The OpenBLAS library this process has loaded (torch loads it), or None (also where /proc is not Linux's)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libopenblas" in line})
    except OSError:
        return None
    return ctypes.CDLL(paths[0]) if paths else None


def use(count: int) -> None:
    """Runs torch and OpenBLAS on `count` threads from now on, in this process."""
    torch.set_num_threads(count)
    blas = _loaded_openblas()
    if blas is not None:
        blas.openblas_set_num_threads(count)


def openblas_count():
    """OpenBLAS's thread count now (None without OpenBLAS)."""
    blas = _loaded_openblas()
    return None if blas is None else blas.openblas_get_num_threads()
