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


def test_query_sampling_without_and_with_a_layout():
    assert AttentionRecorder(query_sample=1).query_sample == 1  # 1 is the smallest sample
    q, k = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 9, 4)  # queries are rows 3..8
    rec = AttentionRecorder(query_sample=2, seed=3)  # no layout: the query block is one level (0)
    rec.record(0, q, k)
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 0 + 7)
    want = (torch.randperm(6, generator=gen)[:2] + 3).sort().values
    assert torch.equal(rec.records[0].query_index, want)
    lay = token_layout([1, 2, 3], prefix_hw=1)  # 1 + 1 + 4 + 9 = 15 tokens; levels 2 (2x2) and 3 (3x3) here
    n = len(lay)
    rec = AttentionRecorder(query_sample=3, layout=lay, seed=2)
    rec.record(0, torch.randn(1, 1, 13, 4), torch.randn(1, 1, n, 4))  # rows 2..14: levels 1 and 2
    chosen = []
    for level, start, count in ((1, 2, 4), (2, 6, 9)):
        gen = torch.Generator().manual_seed(2 * 1_000_003 + level + 7)
        chosen.append((torch.randperm(count, generator=gen)[:3] + start).sort().values)
    assert torch.equal(rec.records[0].query_index, torch.cat(chosen))


def test_record_checks_shapes_and_query_rows():
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4)
    rec = AttentionRecorder(query_sample=None)
    bad = [
        (q[0], k, "(2, 3, 4)", "(1, 2, 5, 4)"),
        (q, k[0], "(1, 2, 3, 4)", "(2, 5, 4)"),
        (q[:, :, 0], k, "(1, 2, 4)", "(1, 2, 5, 4)"),  # 3-D q whose first two and last sizes match k's
        (q, torch.randn(1, 3, 5, 4), "(1, 2, 3, 4)", "(1, 3, 5, 4)"),
        (q, torch.randn(1, 2, 5, 6), "(1, 2, 3, 4)", "(1, 2, 5, 6)"),
    ]
    for qq, kk, qs, ks in bad:
        msg = rf"^record: expected q \(B, H, Lq, d\) and k \(B, H, Lk, d\), got {_esc(qs)} and {_esc(ks)}$"
        with pytest.raises(ValueError, match=msg):
            rec.record(0, qq, kk)
    with pytest.raises(ValueError, match=r"^record: query rows -1\.\.2 do not fit in 5 keys$"):
        rec.record(0, q, k, q_start=-1)
    with pytest.raises(ValueError, match=r"^record: query rows 3\.\.6 do not fit in 5 keys$"):
        rec.record(0, q, k, q_start=3)
    rec.record(0, q, k, q_start=1)  # an explicit start: rows 1..3
    assert rec.records[0].query_index.tolist() == [1, 2, 3]
    want = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)[0]  # default scale 1 / sqrt(d = 4)
    torch.testing.assert_close(rec.records[0].probs, want)


def _esc(shape: str) -> str:
    return shape.replace("(", r"\(").replace(")", r"\)")


def test_batch_rows_masks_and_float64_accumulation():
    g = torch.Generator().manual_seed(0)
    q4, k4 = torch.randn(4, 2, 3, 8, generator=g), torch.randn(4, 2, 5, 8, generator=g)  # B 4, H 2
    for batch_rows, count in ((None, 4), (3, 3), (6, 4)):  # every batch row (not the heads), min(rows, B)
        rec = AttentionRecorder(query_sample=None, batch_rows=batch_rows)
        rec.record(0, q4, k4, scale=1.0)
        assert rec.records[0].count == count
    q, k = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 4, 5, 8, generator=g)  # B 2, H 4
    # a (1, Lk) row mask broadcasts over the queries
    row = torch.zeros(1, 5)
    row[0, 4] = float("-inf")
    masked = AttentionRecorder(query_sample=None)
    masked.record(0, q, k, row, 1.0)
    assert bool((masked.records[0].probs[..., 4] == 0).all())
    # a per-image 4-D mask is cut to the recorded rows
    per_image = torch.zeros(2, 1, 3, 5)
    per_image[1, ..., 0] = float("-inf")  # only image 1 masks key 0
    first = AttentionRecorder(query_sample=None, batch_rows=1)
    first.record(0, q, k, per_image, 1.0)
    want = torch.softmax(q[:1] @ k[:1].transpose(-1, -2), dim=-1)[0]
    assert first.records[0].count == 1
    torch.testing.assert_close(first.records[0].probs, want)
    # the running sum is float64: the mean of many float32 records is the correctly rounded one
    acc = AttentionRecorder(query_sample=None)
    probs = []
    for _ in range(40):
        qq, kk = torch.randn(1, 2, 3, 8, generator=g), torch.randn(1, 2, 5, 8, generator=g)
        acc.record(0, qq, kk, scale=1.0)
        probs.append(torch.softmax(qq @ kk.transpose(-1, -2), dim=-1)[0])
    total = torch.zeros(2, 3, 5, dtype=torch.float64)
    for p in probs:
        total += p.double()
    assert torch.equal(acc.records[0].probs, (total / 40).float())
