import pytest

from mongo_backup.engine.errors import InvalidInput
from mongo_backup.engine.namespaces import NamespaceFilter, NamespaceRenamer, is_system_namespace


def test_include_and_exclude_patterns_follow_mongodump() -> None:
    f = NamespaceFilter(include=["shop.*", "crm.users"], exclude=["shop.tmp*"])
    assert f.matches("shop.orders")
    assert f.matches("crm.users")
    assert not f.matches("crm.leads")
    assert not f.matches("shop.tmp_import")
    assert not f.matches("shopping.orders")  # `shop.*` is the database shop, not a prefix
    assert f.may_match_database("shop") and not f.may_match_database("other")


def test_star_database_matches_a_collection_everywhere() -> None:
    f = NamespaceFilter(include=["*.users"])
    assert f.matches("a.users") and f.matches("b.users") and not f.matches("a.users2")


def test_no_include_means_everything_but_excludes() -> None:
    f = NamespaceFilter(exclude=["logs.*"])
    assert f.matches("a.b") and not f.matches("logs.x")


def test_collection_names_with_dots_match() -> None:
    assert NamespaceFilter(include=["db.*"]).matches("db.a.b.c")


def test_renames_carry_captures_in_order() -> None:
    r = NamespaceRenamer(["shop.*", "crm.*"], ["shop_copy.*", "archive.crm_*"])
    assert r.rename("shop.orders") == "shop_copy.orders"
    assert r.rename("crm.users") == "archive.crm_users"
    assert r.rename("other.x") == "other.x"


def test_rename_with_star_in_database_and_collection() -> None:
    r = NamespaceRenamer(["*.users"], ["*.users_old"])
    assert r.rename("a.users") == "a.users_old"


@pytest.mark.parametrize(
    ("sources", "targets", "message"),
    [
        (["a.*"], [], "as many --ns-to"),
        (["a.*"], ["b.c"], "same number of '*'"),
        (["nodot"], ["x.y"], "must look like"),
    ],
)
def test_bad_rename_patterns_are_named(sources: list[str], targets: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        NamespaceRenamer(sources, targets)


def test_system_namespaces_are_skipped_as_mongodump_does() -> None:
    assert is_system_namespace("local", "oplog.rs")
    assert is_system_namespace("config", "chunks")
    assert is_system_namespace("app", "system.views")
    assert is_system_namespace("app", "system.buckets.metrics")
    assert not is_system_namespace("app", "system.js")
    assert not is_system_namespace("admin", "settings")
