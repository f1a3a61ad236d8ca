"""The transformer's layout, cache and rotary names moved to their own modules; the old import
path ``vw_robot.models.transformer`` still hands out the very same objects."""

from __future__ import annotations

import pytest

from vw_robot.models import kv_cache, rotary, sequence_layout, transformer

MOVED = {
    sequence_layout: ["IGNORE_INDEX", "SequenceLayout", "pad_left"],
    kv_cache: ["KVCache"],
    rotary: ["ROPE_BASE", "apply_rotary", "rotary_tables"],
}


@pytest.mark.parametrize(
    "module, name", [(module, name) for module, names in MOVED.items() for name in names]
)
def test_transformer_reexports_the_moved_names(module, name: str) -> None:
    assert getattr(transformer, name) is getattr(module, name)
    assert name in transformer.__all__


def test_transformer_all_names_exist() -> None:
    missing = [name for name in transformer.__all__ if not hasattr(transformer, name)]
    assert not missing
