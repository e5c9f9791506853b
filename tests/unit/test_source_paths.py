"""Files the product finds next to its own source (the broker's POM, the built console, the
Avro schemas) are where it looks: moving a module a folder deeper once broke both silently."""

from services.api.routes_console import DIST
from services.devstack.local_kafka import POM


def test_the_broker_pom_and_the_built_console_are_found():
    assert POM.is_file(), POM
    assert (DIST / "index.html").is_file(), DIST
