"""The round-trip samples (tests/samples.py) name every field of every schema: a field added
to a schema without a sample value would otherwise be tested only at its default."""

import pytest

from schemas.codec import AvroCodec
from tests.samples import SAMPLES


@pytest.mark.parametrize("schema", sorted(SAMPLES))
def test_each_sample_names_every_field_and_round_trips(schema):
    codec = AvroCodec()
    assert codec.decode(codec.encode("t", schema, SAMPLES[schema]), schema) == SAMPLES[schema]
