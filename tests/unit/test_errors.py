"""geoflux/errors.py draws its tree in its docstring; the classes must be that tree."""

import re

import geoflux.errors as errors
from connectors.channels.base import EndpointGone, RetryLater
from connectors.channels.http import CallbackSecretMissing
from connectors.compute.base import JobCancelled, JobTimedOut
from connectors.kafka_config import KafkaAuthenticationError
from services.control.job_writer import RecordTooLarge
from streams.jobs.idempotency import IdempotencyConflict


def drawn_parents() -> dict[str, str]:
    """name -> the name drawn above it one level up."""
    lines = errors.__doc__.splitlines()
    top = next(i for i, line in enumerate(lines) if line.strip() == "GeofluxError")
    stack, parents = ["GeofluxError"], {}
    for line in lines[top + 1:]:
        m = re.match(r"^(\s*(?:│\s*)*)[├└]── (\w+)", line)
        if not m:
            break
        depth = len(m.group(1)) // 4  # each level is four columns of "│   " or spaces
        name = m.group(2)
        del stack[depth:]
        parents[name] = stack[-1]
        stack.append(name)
    return parents


def test_the_drawing_is_the_class_tree():
    parents = drawn_parents()
    assert len(parents) >= 10
    for name, parent in parents.items():
        assert getattr(errors, name).__bases__ == (getattr(errors, parent),), name
    ours = {c.__name__ for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.GeofluxError) and c is not errors.GeofluxError}
    assert ours == set(parents), "every class in the module is drawn, and only those"


def test_the_narrower_classes_sit_in_the_tree_where_the_docstring_says():
    assert issubclass(IdempotencyConflict, errors.ValidationError)
    assert issubclass(RecordTooLarge, errors.PermanentError)
    assert issubclass(RetryLater, errors.TransientError)
    assert issubclass(EndpointGone, errors.PermanentError)
    assert issubclass(CallbackSecretMissing, errors.PermanentError)
    assert issubclass(KafkaAuthenticationError, errors.ConfigurationError)
    assert JobCancelled is errors.JobCancelled and JobTimedOut is errors.JobTimedOut
    for name in ("IdempotencyConflict", "RecordTooLarge", "RetryLater", "EndpointGone",
                 "CallbackSecretMissing", "KafkaAuthenticationError"):
        assert f"`{name}`" in errors.__doc__


def test_each_error_class_string_is_unique():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.GeofluxError)]
    strings = [c.error_class for c in classes]
    assert len(strings) == len(set(strings))
