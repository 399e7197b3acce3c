"""Loaded by pytest before any test module. It imports the trainer package first, so that torch in this process uses
the same OpenBLAS kernels as the trainer commands the tests spawn (trainer/__init__.py picks them before torch loads
OpenBLAS): comparisons between an in-process run and a spawned one are bit-exact only then."""
import trainer  # noqa: F401
