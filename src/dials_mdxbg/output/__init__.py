"""What the binning writes: the map file and its PNG preview."""
