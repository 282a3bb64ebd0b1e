"""The ground: per-pixel kernels, each a C call (_ckernels.c, via lib.py) beside its numpy twin."""
