"""Per-pixel kernels behind one backend (backend.py): C (_ckernels.c) or the numpy reference."""
