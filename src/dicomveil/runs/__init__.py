"""Running the engine over files: the Python API, local batches, Dask clusters, DICOMDIR."""
