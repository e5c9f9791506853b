"""Which partition the evaluator answers a REST request on: the one the API asked for when it
is one of the topic's, else the request id's hash (None)."""

import pytest

from streams.evaluator_records import REPLY_PARTITION_ATTRIBUTE, reply_partition


@pytest.mark.parametrize("ask, partitions, expected", [
    ("0", 6, 0), ("5", 6, 5), ("6", 6, None), ("999", 6, None),
    ("-1", 6, None), ("+1", 6, None), (" 1", 6, None), ("1.0", 6, None), ("", 6, None),
    ("\u0661", 6, None),  # an Arabic-Indic one: a digit to str.isdigit, not a partition
    ("x", 6, None), ("2", None, None), ("2", 0, None),
])
def test_an_ask_is_taken_only_when_it_names_one_of_the_topics_partitions(ask, partitions, expected):
    assert reply_partition({REPLY_PARTITION_ATTRIBUTE: ask}, partitions) == expected


def test_no_ask_leaves_it_to_the_key():
    assert reply_partition({}, 6) is None
