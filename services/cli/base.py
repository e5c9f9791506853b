"""What every `geoflux` command shares: the root group, one-line errors, the credential check
and the codec from the settings."""

from __future__ import annotations

import functools

import click

from geoflux.errors import GeofluxError
from geoflux.settings import KafkaSettings, RegistrySettings


def one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GeofluxError as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        except Exception as exc:  # librdkafka and friends: still one line, never a traceback
            if type(exc).__name__ == "KafkaException":
                raise click.ClickException(f"Kafka: {exc.args[0].str()}") from None
            raise
    return wrapper


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
