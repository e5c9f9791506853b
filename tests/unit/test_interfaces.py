"""Every implementation has the whole interface its callers use: the callers never ask
(`hasattr`) whether a tier or a channel has a method, so a missing one must fail here."""

import inspect

import pytest

from connectors.channels.base import Channel, _cls, channel_kinds
from connectors.compute.base import ComputeTier
from connectors.compute.batch import BatchTier
from connectors.compute.inprocess import InProcessTier
from connectors.compute.noop import NoopTier
from connectors.compute.postgis import PostgisTier


def methods(protocol) -> dict[str, object]:
    return {n: v for n, v in vars(protocol).items()
            if not n.startswith("_") and (callable(v) or isinstance(v, classmethod))}


def check(cls, protocol) -> None:
    for name, declared in methods(protocol).items():
        assert hasattr(cls, name), f"{cls.__name__} has no {name}"
        declared_fn = declared.__func__ if isinstance(declared, classmethod) else declared
        assert (inspect.iscoroutinefunction(getattr(cls, name))
                == inspect.iscoroutinefunction(declared_fn)), f"{cls.__name__}.{name}: async or not"
        if isinstance(declared, classmethod):  # called on the class, before any instance exists
            assert not isinstance(inspect.getattr_static(cls, name), type(lambda: 0)), \
                f"{cls.__name__}.{name} must be callable on the class"


def test_the_interfaces_declare_what_their_callers_use():
    assert {"validate", "send", "close"} <= set(methods(Channel))
    assert {"supports", "ensure_schema", "run", "close"} <= set(methods(ComputeTier))


@pytest.mark.parametrize("kind", channel_kinds())
def test_every_channel_kind_implements_the_channel_interface(kind):
    cls = _cls(kind)
    check(cls, Channel)
    assert cls.kind == kind


@pytest.mark.parametrize("cls", [InProcessTier, PostgisTier, NoopTier, BatchTier])
def test_every_tier_implements_the_tier_interface(cls):
    check(cls, ComputeTier)
    assert isinstance(cls.name, str)  # the tier's name in settings and statuses, on the class


def test_a_class_missing_a_method_is_caught():
    class Half:
        name = "half"

        async def run(self, ctx, inputs, progress, cancelled):
            return {}

    with pytest.raises(AssertionError, match="supports"):
        check(Half, ComputeTier)
