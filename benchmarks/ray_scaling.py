"""Ray Data encoding on this machine: 1 vs 2 encoder actors on a synthetic catalog, beside the
single-process build, to say what more actors (more cores, more machines) would give.

    nice -n 10 python benchmarks/ray_scaling.py [--products 20000] [--files 8] [--json benchmarks/results/ray_scaling.json]

The catalog is written as `--files` JSONL files (part-00000.jsonl, ...), a folder of several
records files as large exports are: the Ray runs read it with Ray tasks (one per file), the
single-process run with the catalog reader. It is text-only (titles and attributes drawn from fixed word lists, of varied length,
seeded), so the measurement costs minutes, not hours: image decoding and the image tower are
left out, and the per-product rate is the text and fusion path's (docs/scale.md scales it by
the measured image cost). Each run is a whole `build_index` into a fresh folder (scan, encode,
DuckDB, FAISS), so fixed costs are in every row: Ray's start (timed apart), actor start and
encoder load per actor, the driver's writing. Every actor gets one thread, so 1 vs 2 actors on
2 cores is 1 vs 2 cores' worth of encoding; `1 actor x 2 threads` is the same cores as one
process, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

COLOURS = ["Red", "Blue", "Green", "Black", "White", "Navy Blue", "Pink", "Grey", "Yellow", "Maroon"]
KINDS = ["Tshirts", "Shirts", "Dresses", "Kurtas", "Jeans", "Sports Shoes", "Handbags", "Watches", "Tops", "Sarees"]
WORDS = ["cotton", "slim", "fit", "printed", "casual", "round", "neck", "solid", "regular", "summer", "striped",
         "formal", "embroidered", "woven", "sleeveless", "classic", "relaxed", "denim", "floral", "party"]
BRANDS = ["Roadster", "Nike", "Puma", "HRX", "Libas", "Mango", "Fossil", "Baggit", "W", "Levis"]


def synthetic_catalog(folder: Path, products: int, files: int = 8, seed: int = 0) -> Path:
    """`products` text-only records with myntra-like fields (titles of 3 to 14 words), in
    `files` JSONL files of (nearly) equal size."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    handles = [open(folder / f"part-{n:05d}.jsonl", "w", encoding="utf-8") for n in range(files)]
    try:
        for i in range(products):
            colour, kind, brand = rng.choice(COLOURS), rng.choice(KINDS), rng.choice(BRANDS)
            words = rng.sample(WORDS, rng.randint(1, 12))
            record = {"id": f"S{i:06d}", "title": " ".join([brand, *words, colour, kind]), "baseColour": colour,
                      "articleType": kind, "brand": brand, "gender": rng.choice(["Men", "Women", "Unisex"]),
                      "usage": rng.choice(["Casual", "Formal", "Sports", "Ethnic"]), "price": rng.randint(199, 4999)}
            handles[i * files // products].write(json.dumps(record) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return folder


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_build(catalog: Path, out: Path, encoder, engine=None, threads: int = 1) -> dict:
    from moonsearch.index.builder import build_index

    shutil.rmtree(out, ignore_errors=True)
    load, cpu = load_average(), time.process_time()
    summary = build_index(catalog, out, encoder=encoder, device="cpu", threads=threads, engine=engine)
    cpu = time.process_time() - cpu
    return {"seconds": round(summary.seconds, 2), "products_per_s": round(summary.products_per_second, 2),
            "products": summary.products, "driver_cpu_s": round(cpu, 2),
            "load_before": load, "load_after": load_average()}


def ray_run(catalog: Path, out: Path, encoder, cpus: int, workers: int) -> dict:
    """A build on a fresh local Ray of `cpus` CPUs and `workers` actors (cpus // workers threads each)."""
    import ray

    from moonsearch.index.ray_engine import RayEngine

    started = time.time()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    init = time.time() - started
    try:
        engine = RayEngine(workers=workers)
        result = timed_build(catalog, out, encoder, engine)
        stats = engine.stats
        result.update(ray_init_s=round(init, 2), plan=engine.plan, files=stats["files"],
                      scan_s=round(stats["scan_s"], 2), encode_wall_s=round(stats["wall_s"], 2),
                      actor_cpu_s=round(stats["actor_cpu_s"], 2),
                      products_per_actor_cpu_s=round(stats["products"] / stats["actor_cpu_s"], 2))
        return result
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=8, help="records files the catalog is written as")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.products < 1 or not 1 <= args.files <= args.products:
        parser.error(f"--products must be at least 1 and --files between 1 and --products ({args.products})")

    from moonsearch.encoder.registry import load_encoder

    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    try:
        catalog = synthetic_catalog(work / "catalog", args.products, args.files)
        encoder = load_encoder(args.encoder, device="cpu")
        runs = {}
        print("single process, 1 thread ...", file=sys.stderr)
        runs["local 1 thread"] = timed_build(catalog, work / "local", encoder)
        print("ray, 1 actor x 1 thread ...", file=sys.stderr)
        runs["ray 1 actor x 1 thread"] = ray_run(catalog, work / "ray1", encoder, cpus=1, workers=1)
        print("ray, 2 actors x 1 thread ...", file=sys.stderr)
        runs["ray 2 actors x 1 thread"] = ray_run(catalog, work / "ray2", encoder, cpus=2, workers=2)
        print("ray, 1 actor x 2 threads ...", file=sys.stderr)
        runs["ray 1 actor x 2 threads"] = ray_run(catalog, work / "ray1x2", encoder, cpus=2, workers=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = runs["ray 1 actor x 1 thread"], runs["ray 2 actors x 1 thread"]
    result = {
        "products": args.products, "files": args.files,
        "catalog": f"synthetic, text-only, {args.files} JSONL files (benchmarks/ray_scaling.py)",
        "encoder": f"{encoder.name} ({encoder.encoder_id})", "cores": os.cpu_count(),
        "runs": runs, "speedup_2_vs_1_actor": round(one["seconds"] / two["seconds"], 3),
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
