"""The unified data catalog: datasets, views, quality, versions and ownership certificates."""
