"""Runnable things: the HTTP API, the gateway, the CLI, the local broker."""
