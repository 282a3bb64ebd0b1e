"""The two jobs, import and binning, run here in threads or as tasks on dask."""
