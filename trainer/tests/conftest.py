import trainer  # noqa: F401  (before any test module imports torch: trainer/__init__.py picks OpenBLAS's kernel)
