"""geoflux: geofence events, CEP, geoprocessing jobs and alerts on Apache Kafka.

This package holds only what every layer shares: settings and the error tree.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
