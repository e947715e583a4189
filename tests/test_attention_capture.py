"""``AttentionRecorder`` bookkeeping beyond the exact probabilities (tests/test_attention_distance.py): hooking
several modules and restoring what was there, the explicit query positions at the block's ends, the
distance table's labels, default radius, row order and index, the empty table, and the exact error messages.

Everything here is exact (integers, labels, shapes)."""

from __future__ import annotations

import pytest
import torch

from harness.analysis.attention.capture import AttentionRecorder
from harness.analysis.attention.geometry import token_layout
from harness.analysis.attention.stats import ATTENTION_COLUMNS


class _Attn(torch.nn.Module):
    def __init__(self, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.record_attention = "previous"  # restored on exit, whatever it was


def test_hooks_every_given_module_and_restores_the_previous_value():
    a, b = _Attn(0), _Attn(1)
    rec = AttentionRecorder([torch.nn.Sequential(a), b])  # an iterable of modules
    with rec:
        assert a.record_attention is rec and b.record_attention is rec
    assert a.record_attention == "previous" and b.record_attention == "previous"
    assert rec._hooked == []
    msg = (
        r"^AttentionRecorder: no submodule has a 'record_attention' attribute; the model's attention must follow "
        r"the capture protocol in harness\.analysis\.attention\.capture$"
    )
    with pytest.raises(ValueError, match=msg):
        with AttentionRecorder(torch.nn.Linear(2, 2)):
            pass
    with pytest.raises(ValueError, match=r"^query_sample must be >= 1, got 0$"):
        AttentionRecorder(query_sample=0)
    with AttentionRecorder() as bare:  # no model: nothing to hook, no error
        assert bare._hooked == []


def test_explicit_positions_keep_the_first_row_and_drop_the_end():
    q, k = torch.randn(1, 1, 4, 2), torch.randn(1, 1, 10, 2)  # queries are rows 6..9
    rec = AttentionRecorder(query_sample=[5, 6, 9, 10, 9])
    rec.record(0, q, k)
    assert rec.records[0].query_index.tolist() == [6, 9]  # 6 = first row kept, 10 = end dropped, 9 once
    lay = token_layout([1, 2], prefix_hw=1)  # 1 + 1 + 4 = 6 tokens
    sampled = AttentionRecorder(query_sample=2, layout=lay)
    msg = r"^query rows 6\.\.10 exceed the layout's 6 tokens$"
    with pytest.raises(ValueError, match=msg):
        sampled.record(0, q, k)


def test_distance_table_labels_radius_order_and_errors():
    lay = token_layout([1, 2, 3], prefix_hw=2)  # 4 + 1 + 4 + 9 = 18 tokens
    g = torch.Generator().manual_seed(0)
    rec = AttentionRecorder(query_sample=None, layout=lay)
    n = len(lay)
    for layer in (3, 1):  # recorded out of order
        rec.record(layer, torch.randn(1, 2, n, 4, generator=g), torch.randn(1, 2, n, 4, generator=g))
    table = rec.distance_table()
    assert list(table.columns)[: len(ATTENTION_COLUMNS)] == list(ATTENTION_COLUMNS)
    assert set(table["radius"]) == {0.1}  # the default radius
    assert table.index.tolist() == list(range(len(table)))
    keys = list(zip(table["layer"], table["head"], table["query_level"]))
    assert keys == sorted(keys) and len(keys) == 2 * 2 * 4  # layers x heads x levels (prefix, class, 2x2, 3x3)
    labels = dict(zip(table["query_level"], table["query_scale"]))
    assert labels == {lv: lay.label(lv) for lv in lay.grids} and labels[2] == "3x3"
    empty = AttentionRecorder(layout=lay).distance_table()
    assert list(empty.columns) == list(ATTENTION_COLUMNS) and len(empty) == 0
    with pytest.raises(
        ValueError, match=r"^distance_table needs a TokenLayout \(pass layout= here or to the recorder\)$"
    ):
        AttentionRecorder().distance_table()
    small = token_layout([1, 2], prefix_hw=2)  # 9 tokens: the 18 keys do not fit
    with pytest.raises(ValueError, match=r"^layer 1: 18 keys do not fit the 9-token layout$"):
        rec.distance_table(small)
    keys_only = AttentionRecorder(query_sample=[0], layout=lay)  # query row 0 fits, the 18 keys do not
    keys_only.record(5, torch.randn(1, 1, n, 4), torch.randn(1, 1, n, 4), q_start=0)
    with pytest.raises(ValueError, match=r"^layer 5: 18 keys do not fit the 9-token layout$"):
        keys_only.distance_table(small)
