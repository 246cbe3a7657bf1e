"""Shipping the code location and its Python environment to the cluster (``ship`` in the
executor config): the Dagster host need not share a filesystem with the cluster."""
