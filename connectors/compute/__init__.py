"""Compute tiers: where a geoprocessing job runs. One protocol, one module per tier."""
