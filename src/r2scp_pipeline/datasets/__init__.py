"""Kedro datasets of the project's own (referenced from ``conf/base/catalog_*.yml``)."""
