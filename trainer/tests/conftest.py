"""Loaded by pytest before any test module. It imports the trainer package first, so that torch in this process uses
the same OpenBLAS kernels as the trainer commands the tests spawn (trainer/__init__.py picks them before torch loads
OpenBLAS), and runs this process on one thread, as the tests' jobs run (`threads` 1): comparisons between an
in-process run and a spawned one are bit-exact only then (OpenBLAS's Haswell kernels split over threads change the
last bits)."""
import trainer  # noqa: F401
from trainer import cpu_threads

cpu_threads.use(1)
