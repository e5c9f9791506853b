"""The fault matrix: each module runs the whole product on a broker of its own (a fault may
kill it) and applies its faults in turn; every (fault, pipeline) pair is one test."""

import pytest

from tests.faults.matrix import fresh_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_dsn):
    s = fresh_stack(tmp_path_factory.mktemp("faults"), postgres_dsn)
    try:
        yield s
    finally:
        s.close()
