"""The side-by-side benchmark helpers that can be checked without running a benchmark.

``benchmarks/gpu_check.sh`` must parse (it only runs on a GPU machine); the official-layout key lists of
``benchmarks/_official.py`` must give every key the init rule of the public golden key list (block indices
aside) and the schedule-derived buffers their exact rule.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def official_helpers(monkeypatch):
    gold = Path(os.environ.get("ALIGNVAR_SHARED", ROOT.parent / "shared")) / "golden" / "varsr" / "keys_var_d2.tsv"
    if not gold.is_file():
        pytest.skip(f"the public golden key list is not here ({gold})")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _official

    yield _official, gold
    sys.modules.pop("_official", None)


def test_official_key_lines_take_the_golden_rules(official_helpers) -> None:
    O, gold = official_helpers
    C = 1024
    state = {
        "pos_start": torch.empty(1, 1025, C),
        "lvl_1L": torch.empty(1, 3264, dtype=torch.int64),
        "attn_bias_for_masking": torch.empty(1, 1, 3264, 3264),
        "blocks.13.attn.scale_mul_1H11": torch.empty(1, 16, 1, 1),  # d2 lists blocks 0 and 1 only
        "blocks.13.attn.zero_k_bias": torch.empty(C),
        "class_emb.weight": torch.empty(2, C),
        "not.in.golden": torch.empty(3, 4),
    }
    lines = O._key_lines("var_wo_ddp", state, O._golden_rules(gold), "d16").splitlines()
    assert lines[1] == "#module\tkey\tshape\tdtype\tinit"
    rows = {line.split("\t")[1]: line.split("\t")[2:] for line in lines[2:]}
    pn = "1_2_3_4_6_9_13_18_24_32"
    assert rows["pos_start"] == ["1,1025,1024", "float32", "normal:0.018042"]  # sqrt(1 / (3 * 1024))
    assert rows["lvl_1L"] == ["1,3264", "int64", f"lvl_1L:{pn}"]
    assert rows["attn_bias_for_masking"] == ["1,1,3264,3264", "float32", f"attn_mask:{pn}"]
    assert rows["blocks.13.attn.scale_mul_1H11"][2] == "normal:0.3:1.3862944"
    assert rows["blocks.13.attn.zero_k_bias"][2] == "zeros"
    assert rows["class_emb.weight"][2] == "normal:0.5"
    assert rows["not.in.golden"] == ["3,4", "float32", "auto"]
