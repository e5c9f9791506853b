"""Avro contracts of every topic and the one codec that reads and writes them."""

from schemas.codec import AvroCodec, HttpSchemaRegistry, LocalSchemaRegistry, load_schema

__all__ = ["AvroCodec", "HttpSchemaRegistry", "LocalSchemaRegistry", "load_schema"]
