"""OpenBLAS in the trainer: trainer/__init__.py picks its AVX-512 kernels for every trainer command, unless the
environment names some, and cpu_threads.use sets its thread count with torch's."""
import os
import subprocess
import sys

import torch

from trainer import cpu_threads

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = "import os, trainer; print(os.environ.get('OPENBLAS_CORETYPE'))"


def coretype_in_a_fresh_process(**env):
    base = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**base, **env}, capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()


def test_an_avx512_cpu_gets_the_skylakex_kernels_and_others_keep_openblas_choice():
    with open("/proc/cpuinfo") as cpuinfo:
        avx512 = " avx512f" in cpuinfo.read()
    assert coretype_in_a_fresh_process() == ("SkylakeX" if avx512 else "None")


def test_a_coretype_in_the_environment_wins():
    assert coretype_in_a_fresh_process(OPENBLAS_CORETYPE="Haswell") == "Haswell"


def test_threads_reach_openblas_as_well_as_torch():
    for count in (2, 1):
        cpu_threads.use(count)
        assert (torch.get_num_threads(), cpu_threads.openblas_count()) == (count, count)
