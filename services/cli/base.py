"""What every `geoflux` command shares: the root group, one-line errors, the credential check
and the codec from the settings."""

from __future__ import annotations

import functools
import traceback

import click

from geoflux.errors import GeofluxError
from geoflux.settings import KafkaSettings, RegistrySettings


def one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            # The traceback's frames hold the command's Kafka clients (an AdminClient whose
            # error callback raised, say). Kept, they were destroyed only as the interpreter
            # shut down, with librdkafka's threads still running: one such exit ended in
            # SIGSEGV instead of exit code 1. Released here, they are destroyed now.
            traceback.clear_frames(exc.__traceback__)
            line = _one_line(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None
    return wrapper


def _one_line(exc: Exception) -> str | None:
    """The error as one line, or None for an exception to let through as it is."""
    if isinstance(exc, GeofluxError):
        return str(exc).splitlines()[0]
    if isinstance(exc, (OSError, ValueError)):
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    if type(exc).__name__ == "KafkaException":  # librdkafka's: still one line, never a traceback
        return f"Kafka: {exc.args[0].str()}"
    return None


def checks_credentials(fn):
    """Before a long-running command starts its clients: credentials or certificates the
    cluster refuses end it with that reason (exit 1), instead of a transactional producer
    waiting for its coordinator for ever. An unreachable cluster is waited for as before."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from connectors.kafka_admin import check_credentials

        check_credentials(KafkaSettings())
        return fn(*args, **kwargs)
    return wrapper


def codec():
    from schemas.codec import codec_from_settings

    return codec_from_settings(RegistrySettings())


@click.group(help="geoflux: geofence events, CEP, jobs and alerts on Apache Kafka.")
def main() -> None:
    pass
