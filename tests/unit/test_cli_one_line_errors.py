"""A failed command reports its error on one line and releases what its frames held (its
Kafka clients) at once, not when the interpreter shuts down: a librdkafka client destroyed
during shutdown, its threads still running, once ended `geoflux topics apply` in SIGSEGV
instead of exit code 1."""

import gc
import traceback
import weakref

import click
import pytest
from click.testing import CliRunner

from geoflux.errors import ConfigurationError
from services.cli.base import one_line_errors


class Client:
    """Stands in for a librdkafka client held in a failing command's local variable."""


def failing(error: Exception, held: list):
    @click.command()
    @one_line_errors
    def command() -> None:
        client = Client()
        held.append(weakref.ref(client))
        raise error
    return command


@pytest.mark.parametrize("error, line", [
    (ConfigurationError("Kafka TLS failed at host:9093\nsecond line"), "Error: Kafka TLS failed at host:9093\n"),
    (OSError("disk full"), "Error: OSError: disk full\n"),
])
def test_the_error_is_one_line_and_the_client_is_released_before_exit(error, line):
    gc.disable()  # only reference counting may free it: what an exiting interpreter relies on
    try:
        held: list = []
        result = CliRunner().invoke(failing(error, held))
        assert result.exit_code == 1 and result.output == line
        assert held[0]() is None, "the failed command's client outlived its error"
    finally:
        gc.enable()


def test_an_unexpected_error_still_has_its_traceback():
    held: list = []
    result = CliRunner().invoke(failing(RuntimeError("bug"), held))
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert result.exc_info[2] is not None and "raise error" in "".join(
        traceback.format_tb(result.exc_info[2]))
