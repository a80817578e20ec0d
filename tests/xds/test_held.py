"""HeldVersions reads and writes exactly like a dict, whatever it shares (checked against one)."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from controlplane.xds.held import HeldVersions

_NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), _NAMES, st.sampled_from(["1", "2"])),
        st.tuples(st.just("del"), _NAMES, st.just("")),
        st.tuples(st.just("replace"), st.dictionaries(_NAMES, st.sampled_from(["1", "2"])), st.just("")),
    ),
    max_size=30,
)


@given(initial=st.dictionaries(_NAMES, st.just("0")), ops=_OPS)
def test_held_versions_behave_as_a_dict(initial: dict[str, str], ops: list[tuple[object, ...]]) -> None:
    held, model = HeldVersions(initial), dict(initial)
    for op, arg, version in ops:
        if op == "set":
            assert isinstance(arg, str) and isinstance(version, str)
            held[arg] = version
            model[arg] = version
        elif op == "del":
            assert isinstance(arg, str)
            if arg in model:
                del held[arg]
                del model[arg]
            else:
                assert arg not in held and held.pop(arg, None) is None
        else:
            assert isinstance(arg, dict)
            shared = MappingProxyType(dict(arg))
            held.replace(shared)
            model = dict(arg)
        assert dict(held) == model and len(held) == len(model)
        assert all(held.get(n) == model.get(n) and (n in held) == (n in model) for n in "abcde")


def test_a_replaced_map_is_shared_not_copied_and_never_written() -> None:
    shared = MappingProxyType({"a": "1", "b": "1"})
    one, two = HeldVersions(), HeldVersions()
    one.replace(shared)
    two.replace(shared)
    one["a"] = "2"
    del one["b"]
    assert dict(one) == {"a": "2"} and dict(two) == {"a": "1", "b": "1"} == dict(shared)
