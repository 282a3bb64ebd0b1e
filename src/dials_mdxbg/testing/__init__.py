"""Synthetic Pilatus (miniCBF) and Eiger (NXmx) sweeps for the tests, the demo and the benchmark."""
