"""geoflux: geofence events, CEP, geoprocessing jobs and alerts on Apache Kafka.

This package holds only what every layer shares: settings, the error tree, tenant keys and
the process check.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
