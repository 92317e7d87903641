"""The MOON2.0 ablation on the Myntra test split, one command from training to table.

Every variant (the full moon-lite and one config per switched-off component) is trained on the
train split with the same budget (`--epochs`, same products, same seed), scored with the
`myntra` protocol, and written to `benchmarks/results/ablation/myntra-<variant>.json`. The table
`benchmarks/results/ablation.md` puts them beside the shipped models and the text references
(their results come from `moonsearch eval myntra`, in benchmarks/results/).

Trained variants are kept under `--runs-dir` and reused, so an interrupted run continues where
it stopped. All variants share one memo of frozen-tower tokens: the towers run once per test
input, and only the small fusion model runs per variant.

    python benchmarks/ablation.py --data ../shared/data/myntra --epochs 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("moon-lite", "moon-lite-no-moe", "moon-lite-no-dual", "moon-lite-no-coaug", "moon-lite-no-filter")
WHAT_IS_OFF = {
    "moon-lite": "full model",
    "moon-lite-no-moe": "w/o MoE (one dense FFN, uniform objective weights)",
    "moon-lite-no-dual": "w/o dual-level alignment (no intra-product loss)",
    "moon-lite-no-coaug": "w/o co-augmentation (no T+, no visual expansion)",
    "moon-lite-no-filter": "w/o dynamic sample filtering",
}
VARIANT_OF = {"moe": "moon-lite-no-moe", "dual_level": "moon-lite-no-dual",   # component -> variant without it
              "co_augmentation": "moon-lite-no-coaug", "filtering": "moon-lite-no-filter"}
REFERENCES = ("moon-lite", "baseline", "minilm-title", "bm25-title")


def train_variant(variant: str, data: Path, epochs: int, runs_dir: Path) -> tuple[Path, dict]:
    from moonsearch.train.baseline import load_config
    from moonsearch.train.moon import train_moon

    out = runs_dir / f"{variant}-e{epochs}"
    weights = out.with_suffix(".safetensors")
    config = load_config(variant)
    config["optim"]["epochs"] = epochs
    saved = out.with_suffix(".json")
    if not weights.exists() or json.loads(saved.read_text()).get("training") != config:   # configs change
        train_moon(data, config, out)
    return weights, json.loads(out.with_suffix(".report.json").read_text())


def evaluate_variant(variant: str, weights: Path, data: Path, queries: Path, memo) -> dict:
    from moonsearch.encoder.moon import MoonEncoder
    from moonsearch.eval.protocols import myntra
    from moonsearch.eval.references import System

    encoder = MoonEncoder.load(weights)
    encoder.memo = memo
    started = time.time()
    result = myntra.run(System(variant, encoder), data, queries_path=queries)
    result["seconds"] = round(time.time() - started, 1)
    return result


def ablation_table(rows: list[dict], epochs: int) -> str:
    from moonsearch.eval.runner import results_table

    named = [{**r, "encoder": f"{r['encoder']} ({r['label']})"} for r in rows]
    lines = ["# Ablation: moon-lite components on the Myntra test split", "",
             f"Made by `python benchmarks/ablation.py --epochs {epochs}`. Each variant is trained on the "
             f"train split with the same budget ({epochs} epoch(s) over the same 20,000 train products, "
             "seed 0) and scored by the `myntra` protocol (benchmarks/README.md). The lower rows are "
             "the shipped models and text references from `moonsearch eval myntra`.", "",
             results_table(named)]
    lines += ["Validation on held-out *train* products (the numbers to choose by; see benchmarks/README.md):", "",
              "| variant | training wall time (s) | val shopper P@10 | val title->mm hit@1 | val view->mm hit@1 |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['encoder']} | {r['training_seconds']} | " + " | ".join(
              str(r.get("validation", {}).get(k, "-")) for k in ("val shopper P@10", "val title->mm hit@1", "val view->mm hit@1"))
              + " |" for r in rows if r.get("training_seconds")]
    return "\n".join(lines) + "\n"


def last_validation(report: dict) -> dict:
    """The held-out train figures of a training report's last epoch."""
    return {k: v for k, v in report["history"][-1].items() if k.startswith("val ")}


def shipped_label(name: str) -> str:
    """"reference" for the text baselines; for moon-lite, what the shipped weights were trained with."""
    if name in ("bm25-title", "minilm-title"):
        return "reference"
    if name != "moon-lite":
        return "shipped"
    from moonsearch.encoder.registry import weights_path

    training = json.loads(weights_path(name).with_suffix(".json").read_text())["training"]
    report = json.loads(weights_path(name).with_suffix(".report.json").read_text())
    off = [WHAT_IS_OFF[VARIANT_OF[key]].split(" (")[0] for key, on in training["components"].items() if not on]
    epochs = f"{training['optim']['epochs']} ep"
    if training["loss"].get("omega_mix", 0.5) != 0.5:   # the configs' value, the ablation's too
        epochs += f" at omega_mix {training['loss']['omega_mix']}"
    if "init" in report:   # trained on from other weights: their epochs come first
        epochs = f"{report['init']['epochs']} ep + {epochs}"
    return ", ".join(["shipped", *off, epochs, f"{report['data']['products']:,} products"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/myntra")
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared/data/queries/shopper_queries.jsonl")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / ".cache/moonsearch/runs/ablation")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--table-only", action="store_true",
                        help="Rebuild ablation.md from the variants' results already written (no training).")
    args = parser.parse_args()

    from moonsearch.encoder.moon import TowerTokenMemo
    from moonsearch.eval.runner import write_result

    args.runs_dir.mkdir(parents=True, exist_ok=True)
    memo = TowerTokenMemo()
    rows = []
    for variant in args.variants:
        if args.table_only:
            result = json.loads((args.results_dir / "ablation" / f"myntra-{variant}.json").read_text())
            epochs = result["budget"]["epochs"]
            report = args.runs_dir / f"{variant}-e{epochs}.report.json"
            if report.exists() and "validation" not in result:
                result["validation"] = last_validation(json.loads(report.read_text()))
            rows.append({**result, "label": f"{WHAT_IS_OFF[variant]}, {epochs} ep"})
            continue
        weights, report = train_variant(variant, args.data, args.epochs, args.runs_dir)
        result = evaluate_variant(variant, weights, args.data, args.queries, memo)
        result.update(encoder=variant, budget={"epochs": args.epochs}, training_seconds=report["wall_seconds"]["total"],
                      validation=last_validation(report))
        write_result(result, args.results_dir / "ablation")
        print(f"{variant}: {json.dumps(result['metrics'].get('shopper'))}", flush=True)
        rows.append({**result, "label": f"{WHAT_IS_OFF[variant]}, {args.epochs} ep"})
    for name in REFERENCES:
        path = args.results_dir / f"myntra-{name}.json"
        if path.exists():
            rows.append({**json.loads(path.read_text()), "label": shipped_label(name)})
    table = args.results_dir / "ablation.md"
    table.write_text(ablation_table(rows, args.epochs))
    print(f"wrote {table}")


if __name__ == "__main__":
    main()
