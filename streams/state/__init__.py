"""Local state for stateful stages: key-value stores behind one interface, chosen by name."""

from streams.state.store import KeyValueStore, default_kind, open_configured_store, open_store, store_kinds

__all__ = ["KeyValueStore", "default_kind", "open_configured_store", "open_store", "store_kinds"]
