"""CUDA C sources of srcnn-fast's fused kernels, shipped inside the wheel as srcnn_fast.kernels."""
