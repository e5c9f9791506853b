"""Everything that talks to the world outside geoflux's own logic: Kafka, databases, channels."""
