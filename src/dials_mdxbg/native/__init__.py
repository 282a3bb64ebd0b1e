"""The C kernels (_ckernels.c, called through ctypes) and their numpy fallbacks."""
