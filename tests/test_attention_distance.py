"""Attention distance: token geometry, closed-form distances, the capture protocol, comparison and CSV I/O."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.analysis.attention.capture import AttentionRecorder
from harness.analysis.attention.geometry import token_coordinates, token_layout, token_levels
from harness.analysis.attention.stats import (
    ATTENTION_COLUMNS,
    attention_distance_by_scale,
    attention_mass_by_key_scale,
    key_scale_attention_map,
    mass_within_radius,
    mean_attention_distance,
    query_distance_map,
)
from harness.analysis.attention.tables import compare_models, read_attention_csv, write_attention_csv

VARSR_PN = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
# mean distance of two independent uniform points in the unit square
UNIT_SQUARE_MEAN_DISTANCE = (2 + math.sqrt(2) + 5 * math.log(1 + math.sqrt(2))) / 15


# --------------------------------------------------------------------------------------------------- geometry
def test_varsr_layout_lengths_levels_and_class_slot():
    lay = token_layout(VARSR_PN, prefix_hw=32)
    assert len(lay) == 3264 == 1024 + 1 + 2239
    counts = torch.bincount(lay.levels + 1).tolist()
    assert counts == [1024] + [pn * pn for pn in VARSR_PN]
    assert lay.level_slice(0) == slice(1024, 1025)
    assert lay.label(0) == "1x1 (class)" and lay.label(-1) == "prefix 32x32" and lay.label(6) == "13x13"
    assert lay.coords[1024].tolist() == [0.5, 0.5]  # class token: the whole image's centre
    topleft = token_layout(VARSR_PN, prefix_hw=32, alignment="topleft")
    assert topleft.coords[1024].tolist() == [0.0, 0.0]  # identity rotation in VARSR's RoPE


def test_center_and_topleft_coordinates_of_a_3x3_scale():
    center = token_coordinates([3], include_class=False)
    assert sorted(set(center[:, 0].tolist())) == pytest.approx([1 / 6, 1 / 2, 5 / 6])
    assert center[1].tolist() == pytest.approx([1 / 6, 1 / 2])  # row-major: token (0, 1)
    topleft = token_coordinates([3], include_class=False, alignment="topleft")
    assert sorted(set(topleft[:, 1].tolist())) == pytest.approx([0, 1 / 3, 2 / 3])
    # tokens of every scale covering the same region share their centre: 2x2 token (1,1) = 4x4 block centre
    lay = token_layout([2, 4], include_class=False)
    fine = lay.coords[lay.level_slice(1)].reshape(4, 4, 2)[2:, 2:].reshape(-1, 2).mean(0)
    assert lay.coords[3].tolist() == pytest.approx(fine.tolist())


def test_topleft_matches_the_rope_grid_of_the_model():
    rope = pytest.importorskip("methods.alignvar.rope")
    rows, cols = rope.token_positions((32, 32), [(p, p) for p in VARSR_PN], (32, 32))
    coords = token_coordinates(VARSR_PN, prefix_hw=32, alignment="topleft")
    assert torch.allclose(coords[:, 0], rows.double() / 32, atol=1e-6)
    assert torch.allclose(coords[:, 1], cols.double() / 32, atol=1e-6)


def test_layout_errors():
    with pytest.raises(ValueError, match=r"first scale is the class token's slot and must be 1x1, got \(2, 2\)"):
        token_layout([2, 4])
    with pytest.raises(ValueError, match="alignment must be 'center' or 'topleft'"):
        token_layout([1, 2], alignment="middle")
    with pytest.raises(ValueError, match=r"patch_nums\[1\]: expected a positive int"):
        token_layout([1, 0])


def test_uniform_attention_equals_mean_pairwise_distance():
    lay = token_layout([4], include_class=False)
    pts = lay.coords.tolist()
    brute = sum(math.dist(p, q) for p, q in itertools.product(pts, pts)) / len(pts) ** 2
    uniform = torch.full((16, 16), 1 / 16)
    assert float(mean_attention_distance(uniform, lay.coords, lay.coords)) == pytest.approx(brute, rel=1e-12)
    # and the fine-grid limit is the unit square's mean distance 0.5214...
    big = token_layout([32], include_class=False)
    value = mean_attention_distance(torch.full((1024, 1024), 1 / 1024), big.coords, big.coords)
    assert float(value) == pytest.approx(UNIT_SQUARE_MEAN_DISTANCE, abs=5e-4)


def test_one_hot_to_self_and_to_a_known_offset():
    lay = token_layout([8], include_class=False)
    c = lay.coords
    eye = torch.eye(64)
    assert float(mean_attention_distance(eye, c, c)) == 0.0
    assert float(mass_within_radius(eye, c, c, 0.0)) == 1.0
    # queries (i, j) with i < 5, j < 4 attend one-hot to (i + 3, j + 4): distance sqrt(3^2 + 4^2) / 8 = 0.625
    queries = [i * 8 + j for i in range(5) for j in range(4)]
    probs = torch.zeros(len(queries), 64)
    for row, q in enumerate(queries):
        probs[row, q + 3 * 8 + 4] = 1.0
    qc = c[queries]
    assert float(mean_attention_distance(probs, qc, c)) == pytest.approx(0.625, abs=1e-12)
    assert float(mass_within_radius(probs, qc, c, 0.62)) == 0.0
    assert float(mass_within_radius(probs, qc, c, 0.625)) == 1.0
    # half the mass on self, half at the offset: distance 0.3125, mass within 0.5 = 0.5
    mixed = probs * 0.5
    mixed[torch.arange(len(queries)), torch.tensor(queries)] = 0.5
    assert float(mean_attention_distance(mixed, qc, c)) == pytest.approx(0.3125, abs=1e-12)
    assert float(mass_within_radius(mixed, qc, c, 0.5)) == pytest.approx(0.5)


def test_cross_scale_distance_depends_on_alignment():
    for alignment, expected in (("center", math.sqrt(2) * 0.625), ("topleft", math.sqrt(2) * 0.75)):
        lay = token_layout([2, 4], include_class=False, alignment=alignment)
        probs = torch.zeros(1, len(lay))
        probs[0, 4 + 15] = 1.0  # 2x2 token (0,0) -> 4x4 token (3,3)
        got = mean_attention_distance(probs, lay.coords[:1], lay.coords)
        assert float(got) == pytest.approx(expected, abs=1e-12), alignment


def test_leading_dims_and_shape_errors():
    lay = token_layout([2], include_class=False)
    probs = torch.stack([torch.eye(4), torch.full((4, 4), 0.25)])[None].expand(3, 2, 4, 4)  # (3, 2, Q, K)
    out = mean_attention_distance(probs, lay.coords, lay.coords)
    assert out.shape == (3, 2) and (out[:, 0] == 0).all()
    with pytest.raises(ValueError, match=r"probs \(\.\.\., Q, K\) = \(4, 3\) does not match"):
        mean_attention_distance(torch.ones(4, 3), lay.coords, lay.coords)


# ------------------------------------------------------------------------------------------------ aggregation
def test_distance_by_scale_table():
    lay = token_layout([1, 2], include_class=True)  # 5 tokens: class + 2x2
    labels = {lv: lay.label(lv) for lv in lay.grids}
    identity, uniform = torch.eye(5), torch.full((5, 5), 0.2)
    probs = torch.stack([torch.stack([identity, uniform]), torch.stack([uniform, identity])])  # (2 layers, 2 heads)
    df = attention_distance_by_scale(
        probs, lay.levels, lay.coords, lay.coords, k_levels=lay.levels, radius=0.4, layers=[3, 7], labels=labels
    )
    assert list(df.columns) == list(ATTENTION_COLUMNS)
    assert len(df) == 2 * 2 * 2
    row = df[(df.layer == 3) & (df["head"] == 1) & (df.query_level == 0)].iloc[0]
    # class token at (0.5, 0.5): distance sqrt(2)/4 to each of the four 2x2 centres, 0 to itself
    assert row.mean_distance == pytest.approx(0.8 * math.sqrt(2) / 4)
    assert row.mass_within_r == pytest.approx(1.0)  # sqrt(2)/4 = 0.354 <= 0.4
    assert row.query_scale == "1x1 (class)" and row.n_queries == 1
    fine = df[(df.layer == 7) & (df["head"] == 0) & (df.query_level == 1)].iloc[0]
    # a 2x2 token: 0 (self), 0.5, 0.5, sqrt(2)/2 to the others and sqrt(2)/4 to the class token
    assert fine.mean_distance == pytest.approx(0.2 * (0.5 + 0.5 + math.sqrt(2) / 2 + math.sqrt(2) / 4))
    assert fine.mass_within_r == pytest.approx(0.4)  # self and the class token
    # within its own scale the 0.8 mass on the four 2x2 tokens renormalises to 1/4 each
    assert fine.within_scale_distance == pytest.approx((0.5 + 0.5 + math.sqrt(2) / 2) / 4)
    assert (fine.mass_own, fine.mass_class, fine.mass_coarser, fine.mass_prefix) == pytest.approx((0.8, 0.2, 0, 0))
    assert (df[(df.layer == 3) & (df["head"] == 0)].mean_distance == 0).all()
    # the class token sees only itself under the block-causal mask: its uniform baseline is 0 away, all class
    assert row.uniform_mean_distance == 0 and row.uniform_mass_class == 1 and row.mass_class == pytest.approx(0.2)
    # a 2x2 query sees all 5 tokens: uniform = the same numbers as the uniform head above
    for col in ("mean_distance", "within_scale_distance", "mass_within_r", "mass_own", "mass_class"):
        assert fine[f"uniform_{col}"] == pytest.approx(fine[col]), col


def test_within_scale_distance_isolates_local_bias_from_context_keys():
    """A query that gives half its mass to the class token (far away at the image centre) and half to its own
    position: the all-keys distance is large, the within-scale one is 0."""
    lay = token_layout([1, 4], prefix_hw=2)  # prefix 2x2 | class | 4x4
    q = lay.level_slice(1).start  # 4x4 token (0, 0) at (1/8, 1/8)
    probs = torch.zeros(1, 1, 1, len(lay))
    probs[..., 4] = 0.5  # the class token at (1/2, 1/2)
    probs[..., q] = 0.5
    df = attention_distance_by_scale(
        probs, lay.levels[[q]], lay.coords[[q]], lay.coords, k_levels=lay.levels, radius=0.1
    )
    row = df.iloc[0]
    assert row.mean_distance == pytest.approx(0.5 * math.sqrt(2) * 3 / 8)
    assert row.within_scale_distance == 0.0 and row.mass_own == 0.5 and row.mass_class == 0.5
    # uniform over the visible 4 + 1 + 16 keys: group masses are the key counts' shares
    assert (row.uniform_mass_prefix, row.uniform_mass_class, row.uniform_mass_own) == pytest.approx(
        (4 / 21, 1 / 21, 16 / 21)
    )
    fine = lay.coords[lay.level_slice(1)]
    assert row.uniform_within_scale_distance == pytest.approx(float(torch.cdist(lay.coords[[q]], fine).mean()))


def test_mass_by_key_scale_and_heatmaps():
    lay = token_layout([1, 2, 4], include_class=False)  # 1 + 4 + 16 tokens
    L = len(lay)
    probs = torch.zeros(L, L)
    probs[:, 5 + 6] = 0.75  # every query: 0.75 on 4x4 token (1, 2)
    probs[:, 0] = 0.25  # 0.25 on the 1x1 token
    mass = attention_mass_by_key_scale(probs, lay.levels, lay.levels)
    assert mass.shape == (3, 3)
    assert mass[:, 0].tolist() == [0.25] * 3 and mass[:, 1].tolist() == [0.0] * 3 and mass[:, 2].tolist() == [0.75] * 3
    qidx = torch.arange(L)
    heat = key_scale_attention_map(probs, qidx, lay, query_level=1, key_level=2)
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[1, 2] = 0.75
    assert torch.equal(heat, expected)
    # distance map on the query grid; unsampled positions are NaN
    sampled = torch.tensor([5, 8, 20])  # 4x4 tokens (0,0), (0,3), (3,3)
    dmap = query_distance_map(probs[sampled], sampled, lay, query_level=2)
    target = lay.coords[5 + 6]
    for pos, (i, j) in zip(sampled.tolist(), [(0, 0), (0, 3), (3, 3)]):
        want = 0.75 * torch.dist(lay.coords[pos], target) + 0.25 * torch.dist(lay.coords[pos], lay.coords[0])
        assert float(dmap[i, j]) == pytest.approx(float(want))
    assert int(torch.isnan(dmap).sum()) == 13
    with pytest.raises(ValueError, match=r"no sampled query at level 1 \(2x2\)"):
        key_scale_attention_map(probs[sampled], sampled, lay, query_level=1, key_level=2)


# ---------------------------------------------------------------------------------------------------- capture
class ToyAttention(torch.nn.Module):
    """A minimal attention layer following the capture protocol (as the model's attention must)."""

    def __init__(self, dim: int, heads: int, layer_idx: int):
        super().__init__()
        self.heads, self.layer_idx = heads, layer_idx
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.record_attention = None

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None, scale: float = 0.7):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        rec = self.record_attention
        if rec is not None and rec.wants(self.layer_idx):
            rec.record(self.layer_idx, q, k, attn_bias, scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=scale), v


class ToyModel(torch.nn.Module):
    def __init__(self, dim=16, heads=2, depth=3):
        super().__init__()
        self.blocks = torch.nn.ModuleList(ToyAttention(dim, heads, i) for i in range(depth))

    def forward(self, x, bias):
        outs = []
        for blk in self.blocks:
            out, v = blk(x, bias)
            outs.append((out, v))
            x = x + out.transpose(1, 2).flatten(2)
        return outs


def block_causal_bias(levels: torch.Tensor) -> torch.Tensor:
    keep = levels[:, None] >= levels[None, :]
    return torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))[None, None]


def test_recorder_captures_exact_probabilities_of_sampled_queries():
    torch.manual_seed(0)
    lay = token_layout([1, 2, 3, 4], prefix_hw=4)  # 16 + 1 + 4 + 9 + 16 = 46 tokens
    bias = block_causal_bias(lay.levels)
    model = ToyModel()
    x = torch.randn(1, len(lay), 16)
    with torch.no_grad():
        reference = model(x, bias)
    with torch.no_grad(), AttentionRecorder(model, layers=[0, 2], query_sample=3, layout=lay, seed=1) as rec:
        outs = model(x, bias)
    assert all(b.record_attention is None for b in model.blocks)  # unhooked on exit
    for (o1, _), (o2, _) in zip(reference, outs):
        assert torch.equal(o1, o2)  # recording does not change the model's computation
    records = rec.records
    assert [r.layer for r in records] == [0, 2]
    for r in records:
        levels = lay.levels[r.query_index]
        assert torch.bincount(levels + 1).tolist() == [3, 1, 3, 3, 3]  # <= 3 per level (1 for the class)
        out, v = outs[r.layer]
        # the recorded rows are exactly the weights SDPA applied: out = P @ v
        assert torch.allclose(r.probs @ v[0], out[0][:, r.query_index], atol=1e-6)
        assert torch.allclose(r.probs.sum(-1), torch.ones(2, len(r.query_index)), atol=1e-6)
        assert (r.probs[:, levels == 0][..., 21:] == 0).all()  # the class token cannot see later scales
    table = rec.distance_table(radius=0.3)
    assert set(table.layer) == {0, 2} and set(table.query_level) == {-1, 0, 1, 2, 3} and len(table) == 2 * 2 * 5


def test_recorder_batch_mean_bool_mask_and_kv_cache_mode():
    torch.manual_seed(1)
    q, k = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 9, 8)
    keep = torch.ones(5, 9, dtype=torch.bool)
    keep[:, 0] = False
    rec = AttentionRecorder(query_sample=None)
    rec.record(4, q, k, keep, 0.5)  # KV-cache mode: the 5 queries are rows 4..8 of the 9 keys
    rec.record(4, q.flip(0), k.flip(0), keep, 0.5)
    (r,) = rec.records
    assert r.query_index.tolist() == [4, 5, 6, 7, 8] and r.count == 4
    want = torch.softmax((q @ k.transpose(-1, -2)) * 0.5 + torch.where(keep, 0.0, float("-inf")), -1).mean(0)
    assert torch.allclose(r.probs, want, atol=1e-6)
    assert (r.probs[..., 0] == 0).all()
    explicit = AttentionRecorder(query_sample=[0, 6, 8])
    explicit.record(1, q, k)
    assert explicit.records[0].query_index.tolist() == [6, 8]  # row 0 is not in this call's query block
    with pytest.raises(ValueError, match=r"mask shape \(4, 9\) is not broadcastable to \(\.\.\., 5, 9\)"):
        rec.record(4, q, k, torch.zeros(4, 9))


def test_recorder_errors_for_models_without_the_protocol():
    with pytest.raises(ValueError, match="no submodule has a 'record_attention' attribute"):
        with AttentionRecorder(torch.nn.Linear(2, 2)):
            pass
    with pytest.raises(ValueError, match="distance_table needs a TokenLayout"):
        AttentionRecorder().distance_table()


# ---------------------------------------------------------------------------------------------- compare + I/O
def _table(model: str, distance: float) -> pd.DataFrame:
    rows = []
    for layer, h, lv in itertools.product(range(2), range(2), range(3)):
        row = {
            "layer": layer,
            "head": h,
            "query_level": lv,
            "query_scale": f"{lv + 1}x{lv + 1}",
            "n_queries": 4,
            "radius": 0.1,
        }
        row.update({c: 0.5 for c in ATTENTION_COLUMNS if c not in row})
        row["mean_distance"] = distance * (lv + 1) + 0.01 * layer
        row["uniform_mean_distance"] = 0.52
        rows.append(row)
    return pd.DataFrame(rows).assign(model=model)


def test_compare_models_side_by_side():
    off, on = _table("SCA off", 0.1), _table("SCA on", 0.2)
    cmp = compare_models(off, on, names=("SCA off", "SCA on"), columns=("mean_distance", "mass_within_r"))
    assert list(cmp.columns) == [
        "query_level",
        "query_scale",
        "mean_distance[SCA off]",
        "mean_distance[SCA on]",
        "delta_mean_distance",
        "uniform_mean_distance",
        "mass_within_r[SCA off]",
        "mass_within_r[SCA on]",
        "delta_mass_within_r",
        "uniform_mass_within_r",
    ]
    assert cmp["delta_mean_distance"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert cmp["mean_distance[SCA off]"].tolist() == pytest.approx([0.105, 0.205, 0.305])
    assert cmp["uniform_mean_distance"].tolist() == pytest.approx([0.52] * 3)
    assert "delta_within_scale_distance" in compare_models(off, on).columns  # the default set
    with pytest.raises(ValueError, match=r"different scales; only in 'A': -; only in 'B': 3/4x4$"):
        extra = _table("x", 0.1).assign(
            query_level=lambda d: d.query_level + 1,
            query_scale=lambda d: (d.query_level + 1).map(lambda v: f"{v}x{v}"),
        )
        compare_models(off, pd.concat([off, extra[extra.query_level == 3]]))
    with pytest.raises(ValueError, match="different radii"):
        compare_models(off, on.assign(radius=0.2))


def test_attention_csv_roundtrip_and_schema_error(tmp_path):
    df = _table("SCA on", 0.2)
    path = write_attention_csv(df, tmp_path / "analysis" / "attention.csv")
    back = read_attention_csv(path)
    assert list(back.columns) == ["model", *ATTENTION_COLUMNS]
    pd.testing.assert_frame_equal(back, df[list(back.columns)], check_dtype=False)
    bad = tmp_path / "bad.csv"
    df.drop(columns=["mass_within_r"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: not an attention table, missing columns \['mass_within_r'\]"):
        read_attention_csv(bad)


def test_analyze_attention_on_a_tiny_model(tmp_path, capsys):
    from test_accumulation import analyze, tiny_experiment

    exp = tiny_experiment(tmp_path)
    out = tmp_path / "out"
    assert analyze("attention", str(exp), "--max-images", "2", "--query-sample", "3", "--output", str(out)) == 0
    df = read_attention_csv(out / "attention.csv")
    assert set(df["model"]) == {"alignvar"}
    assert set(df["layer"]) == {0, 1} and set(df["head"]) == {0, 1}  # tiny: depth 2, 2 heads
    assert sorted(set(df["query_level"])) == [-1, 0, 1, 2, 3]
    per_level = df.drop_duplicates("query_level").set_index("query_level")["n_queries"].to_dict()
    assert per_level == {-1: 6, 0: 2, 1: 6, 2: 6, 3: 6}  # <= 3 sampled rows per scale, summed over 2 images
    # the four key groups partition every query's visible keys: their masses sum to 1 (probabilities and the
    # uniform baseline alike), and the baseline's masses are the key counts' shares: a 4x4 query (level 3)
    # sees the 4x4 prefix, the class token, 2x2 + 3x3 coarser tokens and its own 16
    groups = [f"mass_{g}" for g in ("prefix", "class", "coarser", "own")]
    assert df[groups].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert df[[f"uniform_{g}" for g in groups]].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-12)
    fine = df[df["query_level"] == 3].iloc[0]
    assert [fine[f"uniform_{g}"] for g in groups] == pytest.approx([16 / 46, 1 / 46, 13 / 46, 16 / 46])
    assert (out / "attention_distance.pdf").is_file() and (out / "attention_heatmaps.png").is_file()
    assert analyze("sca-masks", str(exp), "--max-images", "1", "--output", str(out)) == 0
    assert (out / "sca_masks_im0.png").is_file()


# ------------------------------------------------------------------------------- capture on the real model
def _attention_io(model):
    """Hooks on every SelfAttention of the model: per layer, the values v (B, H, n, D) of each call (from the
    module's input, as its forward computes them) and the SDPA output (B, H, n_q, D) (the input of ``proj``)."""
    calls: dict[int, list] = {}
    handles = []
    for block in model.transformer.blocks:
        attn = block.attn

        def pre(mod, args, calls=calls):
            x = args[0]
            B, L, C = x.shape
            qkv = F.linear(x, mod.mat_qkv.weight, torch.cat((mod.q_bias, mod.zero_k_bias, mod.v_bias)))
            v = qkv.view(B, L, 3, mod.heads, mod.head_dim)[:, :, 2].transpose(1, 2)
            calls.setdefault(mod.layer_idx, []).append({"v": v.detach()})

        def post(proj, args, out, attn=attn, calls=calls):
            y = args[0]  # (B, n_q, C) = SDPA output, heads merged
            B, n, C = y.shape
            calls[attn.layer_idx][-1]["out"] = y.detach().view(B, n, attn.heads, attn.head_dim).transpose(1, 2)

        handles += [attn.register_forward_pre_hook(pre), attn.proj.register_forward_hook(post)]
    return calls, handles


def test_recorder_on_the_real_transformer_reproduces_sdpa_teacher_forced(astronaut):
    from harness.analysis.probes import attention_recorder
    from methods.alignvar.scales import ScaleSchedule
    from tests.tiny_models import make_tiny

    model = make_tiny("laplacian")
    lr = F.interpolate(astronaut[None], size=(64, 64), mode="area") * 2 - 1
    schedule = ScaleSchedule.for_size(64, 64)
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randint(512, (1, n), generator=g) for n in schedule.tokens_per_scale]
    x_in = model.vqvae.quantize.idx_to_var_input(tokens, schedule)
    recorder, _ = attention_recorder(model, schedule, query_sample=4)
    calls, handles = _attention_io(model)
    try:
        with torch.no_grad(), recorder:
            model.transformer(lr, torch.zeros(1, dtype=torch.long), x_in, schedule, model.sca(lr, x_in, schedule))
    finally:
        for h in handles:
            h.remove()
    assert [r.layer for r in recorder.records] == [0, 1]
    for rec in recorder.records:
        (call,) = calls[rec.layer]
        want = call["out"][0][:, rec.query_index]  # (H, Q, D)
        # P @ V of the recorded probabilities is the model's attention output: mask and softmax scale (1, after
        # the L2-normalised, scale_mul-scaled q and k) are the ones SDPA used
        torch.testing.assert_close(rec.probs @ call["v"][0], want, atol=1e-5, rtol=0)


def test_recorder_on_the_real_transformer_reproduces_sdpa_kv_cached(astronaut):
    from harness.analysis.probes import attention_recorder, free_running
    from methods.alignvar.scales import ScaleSchedule
    from tests.tiny_models import make_tiny

    model = make_tiny("laplacian")
    lr = F.interpolate(astronaut[None], size=(64, 64), mode="area") * 2 - 1
    schedule = ScaleSchedule.for_size(64, 64)
    recorder, _ = attention_recorder(model, schedule, query_sample=3)
    calls, handles = _attention_io(model)
    try:
        with recorder:
            free_running(model, lr)  # KV-cached, CFG batch [conditional | negative]; the recorder keeps row 0
    finally:
        for h in handles:
            h.remove()
    checked = 0
    for rec in recorder.records:
        steps = calls[rec.layer]
        lengths = list(itertools.accumulate(c["v"].shape[2] for c in steps))
        step = lengths.index(rec.num_keys)  # the call whose keys are everything cached so far
        v_all = torch.cat([c["v"] for c in steps[: step + 1]], dim=2)[0]
        out = steps[step]["out"][0]  # (H, n_q, D), n_q = 1 for the last block at step 0 (class row only)
        local = rec.query_index - (rec.num_keys - out.shape[1])
        torch.testing.assert_close(rec.probs @ v_all, out[:, local], atol=1e-5, rtol=0)
        checked += 1
    assert checked == 2 * schedule.num_scales  # every layer at every scale


# ------------------------------------------------------------------------- pinned by mutation testing
def test_wrappers_and_level_lookup_errors():
    assert token_levels([2, 4]).tolist() == [0] * 4 + [1] * 16  # no class slot: a 2x2 first scale is fine
    assert token_levels([1, 2], prefix_hw=2).tolist() == [-1] * 4 + [0] + [1] * 4
    with pytest.raises(ValueError, match="must be 1x1"):
        token_coordinates([2, 4])  # the default layout has the class slot
    assert token_coordinates([2, 4], include_class=False).shape == (20, 2)
    with pytest.raises(KeyError, match=r"level 5 is not in this layout; levels: \[0, 1\]"):
        token_layout([1, 2]).level_slice(5)


def test_heatmaps_average_leading_axes_and_keep_other_levels_out():
    lay = token_layout([1, 2, 4], include_class=False)  # 1 + 4 + 16 tokens
    L = len(lay)
    a, b = torch.zeros(L, L), torch.zeros(L, L)
    a[:, 5] = 1.0  # head 0: every query on 4x4 token (0, 0)
    b[:, 20] = 1.0  # head 1: on 4x4 token (3, 3)
    probs = torch.stack([a, b])[None].expand(3, 2, L, L)  # (layers, heads, Q, K): heads differ, layers equal
    qidx = torch.arange(L)
    heat = key_scale_attention_map(probs, qidx, lay, query_level=2, key_level=2)
    want = torch.zeros(4, 4, dtype=torch.float64)
    want[0, 0] = want[3, 3] = 0.5
    assert torch.equal(heat, want)
    with pytest.raises(ValueError, match=r"key level 2 \(4x4\) is beyond the 5 keys"):
        key_scale_attention_map(probs[..., :5], qidx, lay, query_level=1, key_level=2)
    # distance map of the 2x2 level from rows that also include the first 4x4 token (index 5, the level's
    # stop): that row must not land on the 2x2 grid
    sampled = torch.tensor([1, 4, 5])
    dmap = query_distance_map(probs[..., sampled, :], sampled, lay, query_level=1)
    assert int(torch.isnan(dmap).sum()) == 2
    for pos, (i, j) in zip((1, 4), ((0, 0), (1, 1))):
        want_d = 0.5 * (torch.dist(lay.coords[pos], lay.coords[5]) + torch.dist(lay.coords[pos], lay.coords[20]))
        assert float(dmap[i, j]) == pytest.approx(float(want_d))
    # mass per key level, per query level (rows differ by level) with leading axes kept
    p = torch.zeros(2, L, L)
    p[:, :1, 0] = 1.0  # the 1x1 query: all on itself
    p[:, 1:5, 1] = 1.0  # 2x2 queries: on the first 2x2 token
    p[:, 5:, 5] = 1.0  # 4x4 queries: on the first 4x4 token
    mass = attention_mass_by_key_scale(p, lay.levels, lay.levels)
    assert mass.shape == (2, 3, 3) and torch.equal(mass[0], torch.eye(3, dtype=torch.float64))


def test_layout_of_a_non_square_grid_keeps_its_flags_and_names_the_prefix_in_errors():
    from harness.analysis.attention.geometry import key_groups

    lay = token_layout([(2, 3)], include_class=False, alignment="topleft")  # one 2 x 3 map: 6 tokens
    assert len(lay) == 6 and lay.levels.tolist() == [0] * 6 and lay.coords.shape == (6, 2)
    assert lay.include_class is False and lay.alignment == "topleft"
    assert lay.label(0) == "2x3"  # not the class slot
    assert token_layout([1]).alignment == "center" and token_layout([1]).include_class is True
    with pytest.raises(ValueError, match=r"^patch_nums is empty$"):
        token_layout([])
    with pytest.raises(ValueError, match=r"^prefix_hw: expected a positive int or an \(h, w\) pair, got 0$"):
        token_layout([1], prefix_hw=0)
    # key groups of a scale-2 query: the scale-1 key is coarser (1 <= level < 2), the class is not
    groups = key_groups(torch.tensor([2]), torch.tensor([-1, 0, 1, 2, 3]))
    assert {g: m[0].tolist() for g, m in groups.items()} == {
        "prefix": [True, False, False, False, False],
        "class": [False, True, False, False, False],
        "coarser": [False, False, True, False, False],
        "own": [False, False, False, True, False],
    }


def _square_2x2():
    """A lone 2x2 map: centres (1/4, 1/4), (1/4, 3/4), (3/4, 1/4), (3/4, 3/4); neighbours exactly 0.5 apart."""
    lay = token_layout([2], include_class=False)
    assert torch.cdist(lay.coords, lay.coords)[0].tolist() == [0.0, 0.5, 0.5, math.sqrt(0.5)]
    return lay


def test_mass_within_radius_keeps_leading_axes_and_counts_keys_within_the_slack():
    from harness.analysis.attention.stats import per_query_statistics

    lay = _square_2x2()
    c = lay.coords
    # (2 heads, 2 queries, 4 keys): head 0 one-hot on each query itself, head 1 both queries on key 0
    probs = torch.zeros(2, 2, 4)
    probs[0, 0, 0] = probs[0, 1, 1] = probs[1, 0, 0] = probs[1, 1, 0] = 1.0
    assert mass_within_radius(probs, c[:2], c, 0.0).tolist() == [1.0, 0.5]  # per head, mean over the 2 queries
    # uniform attention of query (0, 0): keys at 0, 0.5, 0.5, sqrt(0.5). ||d|| <= r + 1e-9 counts.
    uniform = torch.full((1, 4), 0.25)
    for r, want in ((0.5, 0.75), (0.5 - 1e-9, 0.75), (0.5 - 1e-8, 0.25)):
        assert float(mass_within_radius(uniform, c[:1], c, r)) == want, r
        stats = per_query_statistics(uniform, lay.levels[:1], c[:1], lay.levels, c, radius=r)
        assert stats["mass_within_r"].tolist() == [want] and stats["uniform_mass_within_r"].tolist() == [want], r
    default = per_query_statistics(uniform, lay.levels[:1], c[:1], lay.levels, c)  # radius 0.1: only itself
    assert default["mass_within_r"].tolist() == [0.25]


def test_statistics_shape_errors_name_both_level_shapes_and_counts():
    from harness.analysis.attention.stats import per_query_statistics

    lay = _square_2x2()
    c, lv = lay.coords, lay.levels
    probs = torch.full((3, 4), 0.25)
    msg = r"^q_levels \(2,\) / k_levels \(4,\) do not match the 3 queries / 4 keys$"
    with pytest.raises(ValueError, match=msg):  # only the query levels are wrong
        per_query_statistics(probs, lv[:2], c[:3], lv, c)
    with pytest.raises(ValueError, match=r"^probs must be \(layers, heads, Q, K\), got shape \(3, 4\)$"):
        attention_distance_by_scale(probs, lv[:3], c[:3], c, k_levels=lv)
    with pytest.raises(ValueError, match=r"^q_levels must have shape \(3,\), got \(2,\)$"):
        attention_distance_by_scale(probs[None, None], lv[:2], c[:3], c, k_levels=lv)
    with pytest.raises(ValueError, match=r"^2 layer ids for 1 layers$"):
        attention_distance_by_scale(probs[None, None], lv[:3], c[:3], c, k_levels=lv, layers=[0, 1])


def test_distance_by_scale_defaults_and_an_empty_query_set():
    lay = _square_2x2()
    c, lv = lay.coords, lay.levels
    df = attention_distance_by_scale(torch.full((1, 1, 1, 4), 0.25), lv[:1], c[:1], c, k_levels=lv)
    row = df.iloc[0]
    assert row.radius == 0.1 and row.mass_within_r == 0.25  # default radius 0.1: only the query itself
    assert row.query_scale == "0"  # no labels: the level as a string
    empty = attention_distance_by_scale(
        torch.zeros(1, 1, 0, 4), lv[:0], c[:0], c, k_levels=lv
    )  # no sampled query: no rows, but the schema
    assert list(empty.columns) == list(ATTENTION_COLUMNS) and len(empty) == 0
