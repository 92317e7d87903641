"""Which photo changes the photo identity channel still misses: R@1 of the `photo-mix` queries
(three random changes each, moonsearch.photos.photo_mix) grouped by the changes each drew, and
for the lighting change by its brightness and contrast, ranked as the index ranks image-only
queries. A diagnosis for training and query views, on myntra-val by default (never tune on test).

    .venv/bin/python benchmarks/photo_mix_changes.py                     # shipped weights, myntra-val
    .venv/bin/python benchmarks/photo_mix_changes.py --no-white-point    # without photos.restore_white

Writes benchmarks/results/photo-mix-changes-<split>[-no-white-point].json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def drawn(key: str, seed: int = 0) -> tuple[list[str], tuple[float, float] | None]:
    """The changes photo_mix draws for a product key, and the lighting's (brightness, contrast):
    the same draws replayed on a blank image (no draw depends on the pixels)."""
    from PIL import Image

    from moonsearch import photos

    seen: dict = {}
    lighting = photos.lighting

    def spy(image, brightness, contrast):
        seen["light"] = (brightness, contrast)
        return lighting(image, brightness, contrast)

    rng = random.Random(f"photo-mix:{seed}:{key}")
    kinds = sorted(random.Random(f"photo-mix:{seed}:{key}").sample(photos.CHANGES, 3))
    photos.lighting = spy
    try:
        photos.compose(Image.new("RGB", (40, 40), "white"), rng, 3)
    finally:
        photos.lighting = lighting
    return kinds, seen.get("light")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "myntra")
    parser.add_argument("--split", choices=("myntra-val", "test"), default="myntra-val")
    parser.add_argument("--limit", type=int, default=1000, help="query photos (0: all)")
    parser.add_argument("--no-white-point", action="store_true", help="photo_identity.WHITE_POINT off")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.data / "products.jsonl").is_file():
        raise SystemExit(f"no catalog at {args.data}")
    from robustness import products_of

    from moonsearch.catalog.inputs import model_input
    from moonsearch.encoder import photo_identity as photo
    from moonsearch.eval import robustness

    photo.WHITE_POINT = not args.no_white_point
    products = products_of(args.data, args.split)
    images = [model_input(p).image for p in products]
    identity = photo.PhotoIdentity.load()
    channel = robustness.PhotoChannel.of(identity, images)
    rows = [i for i, im in enumerate(images) if im is not None][:args.limit or None]
    keys = [str(products[i].id) for i in rows]
    queries = robustness.transformed([images[i] for i in rows], keys, "photo-mix")
    found = channel.ranked(None, queries, None)[:, 0] == np.array(rows)

    groups: dict[str, list[bool]] = defaultdict(list)
    for key, hit in zip(keys, found):
        kinds, light = drawn(key)
        for kind in kinds:
            groups[f"any {kind}"].append(bool(hit))
        groups[" + ".join(kinds)].append(bool(hit))
        if light is not None:
            for name, value in zip(("brightness", "contrast"), light):
                low = min(1.1, np.floor(value * 10) / 10)
                groups[f"light, {name} {low:.1f}-{low + 0.1:.1f}"].append(bool(hit))
    table = {name: {"queries": len(hits), "R@1": round(float(np.mean(hits)), 3)} for name, hits in groups.items()}
    name = f"photo-mix-changes-{'val' if args.split == 'myntra-val' else args.split}" + \
        ("-no-white-point" if args.no_white_point else "")
    made_by = " ".join(["python benchmarks/photo_mix_changes.py", *sys.argv[1:]])
    out = {"identity": identity.id, "split": args.split, "queries": len(rows), "white_point": photo.WHITE_POINT,
           "R@1": round(float(found.mean()), 3), "groups": table, "made_by": made_by}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# photo-mix misses by change ({args.split})\n",
             f"Identity `{identity.id}`, white point {'on' if photo.WHITE_POINT else 'off'}; {len(rows)} photo-mix "
             f"queries, R@1 {out['R@1']:.3f}; made by `{made_by}`. Groups of at least 20 queries, worst first.\n",
             "| changes drawn | queries | R@1 |", "|---|---|---|"]
    for group, metrics in sorted(table.items(), key=lambda item: item[1]["R@1"]):
        if metrics["queries"] >= 20 and (group.startswith(("any", "light,"))):
            lines.append(f"| {group} | {metrics['queries']} | {metrics['R@1']:.3f} |")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
