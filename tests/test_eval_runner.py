"""moonsearch eval: results files, the side-by-side table, floors, and the Myntra protocol."""

import json

import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.eval.runner import check_floors, comparison_table, load_floors, run_protocol, write_result

from conftest import SHOPPER_QUERIES


def result(encoder, p10, r1=None):
    metrics = {"shopper": {"P@10": p10, "nDCG@10": p10}}
    if r1 is not None:
        metrics["i2mm"] = {"R@1": r1, "R@10": r1}
    return {"dataset": "myntra", "encoder": encoder, "metrics": metrics}


def test_results_files_and_side_by_side_table(tmp_path):
    write_result(result("bm25-title", 0.5), tmp_path)
    path = write_result(result("baseline", 0.8, r1=0.4), tmp_path)
    assert path.name == "myntra-baseline.json"
    assert json.loads(path.read_text())["metrics"]["shopper"]["P@10"] == 0.8
    table = comparison_table(tmp_path, "myntra").splitlines()
    assert table[0] == "| encoder | i2mm R@1 | i2mm R@10 | shopper P@10 | shopper nDCG@10 |"
    assert "| baseline | 0.400 | 0.400 | 0.800 | 0.800 |" in table
    assert "| bm25-title | - | - | 0.500 | 0.500 |" in table
    write_result({**result("baseline", 0.1), "dataset": "myntra-val"}, tmp_path)   # myntra-val-baseline.json
    assert comparison_table(tmp_path, "myntra").splitlines() == table               # not a myntra row
    assert comparison_table(tmp_path, "myntra-val").splitlines()[2] == "| baseline | 0.100 | 0.100 |"


def test_ablation_table_keeps_the_given_order_and_labels_each_row():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("ablation", REPO / "benchmarks" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    rows = [{**result("moon-lite-no-moe", 0.7, r1=0.3), "label": "w/o MoE, 1 ep", "training_seconds": 600.0,
             "validation": {"val shopper P@10": 0.91, "val title->mm hit@1": 0.95, "val view->mm hit@1": 0.7}},
            {**result("moon-lite", 0.8, r1=0.2), "label": "full model, 1 ep", "training_seconds": 610.0},
            {**result("bm25-title", 0.6), "label": "reference"}]
    lines = ablation.ablation_table(rows, epochs=1).splitlines()
    body = [line for line in lines if line.startswith("| moon-lite") or line.startswith("| bm25")]
    assert body[:3] == ["| moon-lite-no-moe (w/o MoE, 1 ep) | 0.300 | 0.300 | 0.700 | 0.700 |",
                        "| moon-lite (full model, 1 ep) | 0.200 | 0.200 | 0.800 | 0.800 |",
                        "| bm25-title (reference) | - | - | 0.600 | 0.600 |"]
    header = "| variant | training wall time (s) | val shopper P@10 | val title->mm hit@1 | val view->mm hit@1 |"
    costs = lines[lines.index(header):]
    assert costs[2:] == ["| moon-lite-no-moe | 600.0 | 0.91 | 0.95 | 0.7 |",
                         "| moon-lite | 610.0 | - | - | - |"]   # references train nothing; no validation: -


def test_floors(tmp_path):
    path = tmp_path / "floors.json"
    path.write_text(json.dumps({"myntra-baseline": {"shopper": {"P@10": 0.75}, "i2mm": {"R@1": 0.5}}}))
    floors = load_floors(path)
    failures = check_floors(result("baseline", 0.8, r1=0.4), floors)
    assert failures == ["myntra-baseline i2mm R@1: 0.4000 < floor 0.5000"]
    assert check_floors(result("baseline", 0.8, r1=0.6), floors) == []
    assert check_floors(result("baseline", 0.8), floors) == ["myntra-baseline i2mm R@1: missing (floor 0.5)"]
    assert check_floors(result("other", 0.1), floors) == []
    path.write_text('{"myntra-baseline": {')
    with pytest.raises(MoonsearchError, match="floors: .* is not valid JSON"):
        load_floors(path)
    with pytest.raises(MoonsearchError, match="floors: no file at"):
        load_floors(tmp_path / "typo.json")


def test_unknown_protocol_and_missing_data(tmp_path):
    with pytest.raises(MoonsearchError, match="unknown protocol"):
        run_protocol("imagenet", "default", tmp_path)
    with pytest.raises(MoonsearchError, match="cannot be downloaded"):
        run_protocol("m5product", "default", tmp_path / "absent")


@pytest.mark.parametrize("system", ["default", "minilm-title", "bm25-title"])
def test_myntra_protocol_on_a_slice(myntra_available, system):
    out = run_protocol("myntra", system, myntra_available, limit=300, queries=SHOPPER_QUERIES)
    metrics = out["metrics"]
    assert out["counts"]["products"] == 300
    for task in ("t2mm", "mm2mm", "shopper"):
        assert task in metrics
    for task_metrics in metrics.values():
        for value in task_metrics.values():
            assert value is None or 0.0 <= value <= 1.0
    # a title finds its own product (or one with the identical title) in the top 10 almost always
    assert metrics["t2mm"]["R@10"] >= 0.9
    if system == "default":
        assert {"i2mm", "t2i", "i2t", "classification", "attribute"} <= set(metrics)
        # the held-out (mirrored, cropped) photo still finds its own product: far above chance (10/300)
        assert metrics["i2mm"]["R@10"] >= 0.5
        # images and texts are aligned: far above chance (1/300) in both directions
        assert metrics["t2i"]["R@10"] > 0.2 and metrics["i2t"]["R@10"] > 0.2
    else:
        assert "i2mm" not in metrics
