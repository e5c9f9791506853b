"""Avro contracts of every topic and the one codec that reads and writes them
(`schemas.codec`). The package itself imports nothing, so its pure modules (the compiled
readers and writers) can import each other without pulling in the codec's registry client."""
