"""srcnn-fast: fast, exact SRCNN super-resolution (Dong et al.), NumPy/Numba/CUDA backends.

Use :class:`srcnn_fast.infer.Upscaler` from Python, ``srcnn-fast`` from the shell.
"""

__version__ = "0.1.0"
