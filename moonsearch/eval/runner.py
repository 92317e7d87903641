"""`moonsearch eval`: run a protocol for a system, write its results JSON, compare, check floors.

Results are `benchmarks/results/<dataset>-<encoder>.json` shaped
`{"dataset", "encoder", "metrics": {"<task>": {"<metric>": value}}}`; the markdown table of a
dataset is rebuilt from every results file of that dataset, so encoders sit side by side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from moonsearch.devices import placement_for
from moonsearch.encoder.registry import DEFAULT_ENCODER
from moonsearch.errors import MoonsearchError
from moonsearch.eval.references import load_system
from moonsearch.jsonfiles import read_json

PROTOCOLS = ("myntra", "myntra-val", "mbe2", "m5product", "fashion200k")
TASK_ORDER = ("t2mm", "i2mm", "mm2mm", "t2i", "i2t", "classification", "attribute", "shopper", "robustness")
TABLE_METRICS = {
    "t2mm": ("R@1", "R@10"), "i2mm": ("R@1", "R@10"), "mm2mm": ("P@10", "mAP@10"),
    "t2i": ("R@1", "R@10"), "i2t": ("R@1", "R@10"), "classification": ("acc",),
    "attribute": ("acc",), "shopper": ("P@10", "nDCG@10", "R@100"),
    "robustness": ("mirror+crop6 R@1", "photo-mix R@1"),
}


def result_label(system_name: str) -> str:
    """The name a system's results are written under: a shipped or reference system by its name,
    a trained weights file or MLLM folder by its own file or folder name."""
    if system_name in ("default", ""):
        return DEFAULT_ENCODER
    path = Path(system_name)
    if system_name.endswith(".safetensors"):
        return path.stem
    return path.name if (path / "moonsearch.json").is_file() else system_name


def check_distinct_labels(protocol: str, system_names: list[str]) -> None:
    """Refuse, before any work, systems whose results would overwrite each other's file (the
    shipped default and a trained `runs/x/moon-lite.safetensors`, say)."""
    labels = [result_label(name) for name in system_names]
    for label in dict.fromkeys(labels):
        clashing = [name for name, other in zip(system_names, labels) if other == label]
        if len(clashing) > 1:
            raise MoonsearchError(f"{' and '.join(clashing)} would both be written as {protocol}-{label}.json: "
                                  "give each trained weights file its own name")


def run_protocol(protocol: str, system_name: str, data: Path, limit: int | None = None,
                 queries: Path | None = None, device: str = "auto", memo=None) -> dict:
    """`memo`: a TowerTokenMemo shared by the moon-lite encoders of one run (their towers are
    the same frozen networks, so each input goes through them once)."""
    if protocol not in PROTOCOLS:
        raise MoonsearchError(f"unknown protocol '{protocol}' (choose from {', '.join(PROTOCOLS)})")
    data = Path(data)
    if not data.exists():
        raise MoonsearchError(f"no data at {data} (these datasets cannot be downloaded here; pass --data PATH)")
    system = load_system(system_name, device=placement_for(device, "flat").encoder)
    if memo is not None and hasattr(system.encoder, "memo"):
        system.encoder.memo = memo
    started = time.time()
    if protocol == "myntra":
        from moonsearch.eval.protocols import myntra

        result = myntra.run(system, data, queries_path=queries, limit=limit)
    elif protocol == "myntra-val":
        from moonsearch.eval.protocols import myntra

        result = myntra.run_validation(system, data, **({"size": limit} if limit else {}))
    else:
        if system.encoder is None or not system.sees_images:
            raise MoonsearchError(f"{protocol} needs an image+text encoder; '{system_name}' is text-only")
        from moonsearch.eval.protocols import run_protocol as run_benchmark

        result = run_benchmark(protocol, system.encoder, data, limit=limit)
        result = {"dataset": protocol, "encoder": system.name,
                  "encoder_id": system.encoder.encoder_id,
                  "metrics": {k: v for k, v in result.items() if k != "counts"},
                  "counts": result.get("counts", {})}
    result["seconds"] = round(time.time() - started, 1)
    result["encoder"] = result_label(system_name)
    photo_head = getattr(system.encoder, "photo_query_id", None) if system.encoder is not None else None
    if photo_head:   # image-only queries went through it (i2mm, robustness)
        result["photo_query"] = photo_head
    text_head = getattr(system.encoder, "text_query_id", None) if system.encoder is not None else None
    if text_head:    # text-only queries went through it (t2mm, t2i, shopper, text-*)
        result["text_query"] = text_head
    return result


def results_path(results_dir: Path, dataset: str, encoder: str) -> Path:
    return Path(results_dir) / f"{dataset}-{encoder}.json"


def write_result(result: dict, results_dir: Path) -> Path:
    path = results_path(results_dir, result["dataset"], result["encoder"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def comparison_table(results_dir: Path, dataset: str) -> str:
    """Markdown: one row per encoder, the table metrics of every task any of them has."""
    files = sorted(Path(results_dir).glob(f"{dataset}-*.json"))     # myntra-* also matches myntra-val-*
    results = [r for r in (json.loads(p.read_text()) for p in files) if r.get("dataset") == dataset]
    if not results:
        return f"no results for {dataset} in {results_dir}\n"
    return results_table(results)


def results_table(results: list[dict]) -> str:
    """Markdown rows in the given order, one column per table metric any result has."""
    columns = [(task, metric) for task in TASK_ORDER for metric in TABLE_METRICS[task]
               if any(metric in r["metrics"].get(task, {}) for r in results)]
    header = "| encoder | " + " | ".join(f"{t} {m}" for t, m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for r in results:
        cells = []
        for task, metric in columns:
            value = r["metrics"].get(task, {}).get(metric)
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {r['encoder']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(results_dir: Path, dataset: str) -> Path:
    path = Path(results_dir) / f"{dataset}.md"
    body = comparison_table(results_dir, dataset)
    path.write_text(f"# {dataset}: encoders side by side\n\nMade by `moonsearch eval {dataset}` "
                    f"(see benchmarks/README.md for the derivations).\n\n{body}")
    return path


def load_floors(path: Path) -> dict:
    """`{"<dataset>-<encoder>": {"<task>": {"<metric>": floor}}}` (benchmarks/floors.json)."""
    return read_json(path, "floors")


def check_floors(result: dict, floors: dict) -> list[str]:
    """Every metric below its floor, as readable lines (empty: all good)."""
    key = f"{result['dataset']}-{result['encoder']}"
    failures = []
    for task, metrics in floors.get(key, {}).items():
        for metric, floor in metrics.items():
            value = result["metrics"].get(task, {}).get(metric)
            if value is None:
                failures.append(f"{key} {task} {metric}: missing (floor {floor})")
            elif value < floor:
                failures.append(f"{key} {task} {metric}: {value:.4f} < floor {floor:.4f}")
    return failures
