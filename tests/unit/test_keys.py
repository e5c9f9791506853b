import pytest

from geoflux.errors import ValidationError
from geoflux.keys import check_tenant, scoped, unscoped


@pytest.mark.parametrize("oid", ["depot", "a/b/c", "x|y", "ünïcødé", "m" * 200, "", "/"])
def test_scoped_keys_round_trip_whatever_the_object_id(oid):
    assert unscoped(scoped("acme", oid)) == ("acme", oid)


def test_same_object_id_in_two_tenants_gives_two_keys():
    assert scoped("a", "truck-1") != scoped("b", "truck-1")


@pytest.mark.parametrize("bad", ["", "a/b", "x y", "t" * 121, None, 7, "ü"])
def test_tenant_ids_are_restricted_so_the_separator_is_unambiguous(bad):
    with pytest.raises(ValidationError):
        check_tenant(bad)


@pytest.mark.parametrize("key", ["no-separator", "bad tenant/x", "/x"])
def test_unscoped_refuses_keys_that_are_not_scoped(key):
    with pytest.raises(ValidationError):
        unscoped(key)


def test_key_refusals_word_for_word():
    """The wording a person reads in a 422 or a DLQ record, pinned (mutation testing)."""
    with pytest.raises(ValidationError) as e:
        check_tenant("a b")
    assert str(e.value) == "tenant_id 'a b' must be 1-120 characters of letters, digits, . _ : -"
    long = "x" * 100
    with pytest.raises(ValidationError) as e:
        unscoped(long)
    assert str(e.value) == f"key {'x' * 80!r} is not tenant-scoped (tenant/id)"
