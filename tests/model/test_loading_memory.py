"""Loading fits the machine: benchmarks/bench_load.py --tiny measures, in fresh processes, that a bf16 checkpoint
loads with its process growing by about its own size (no float32 copy), and that the measure sees a copy when one
is asked for (float32)."""

import json

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.mark.slow
def test_a_bf16_checkpoint_loads_within_1_3x_its_size(tmp_path, capsys):
    out = tmp_path / "load.json"
    load_benchmark("bench_load").main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(out)])
    rows = {row["mode"]: row for row in json.loads(out.read_text())["rows"]}
    bf16, widened = rows["bf16"], rows["float32"]
    assert bf16["checkpoint_bytes"] > 200e6  # large enough that the libraries' own memory is not what is measured
    assert bf16["growth_over_checkpoint"] <= 1.3, json.dumps(rows)
    assert "bfloat16" in bf16["dtypes"] and bf16["model_bytes"] <= 1.01 * bf16["checkpoint_bytes"]
    assert widened["dtypes"] == ["float32"] and widened["growth_over_checkpoint"] >= 1.9, widened
    assert not (tmp_path / "work" / "random-tiny").exists()  # removed unless --keep
    assert "growth / checkpoint" in capsys.readouterr().out


def test_the_random_sizes_are_the_ones_named():
    bench = load_benchmark("bench_load")
    seven = bench.size_config("7b").text_config
    assert (seven.hidden_size, seven.num_hidden_layers, seven.vocab_size) == (4096, 32, 32000)
    one = bench.size_config("1b").text_config
    assert (one.hidden_size, one.intermediate_size, one.num_hidden_layers, one.num_key_value_heads) == (2048, 5632, 22, 4)
    with pytest.raises(ValueError, match="valid: tiny, 1b, 7b"):
        bench.size_config("13b")
