"""The README's `moonsearch explain` example, made straight from a catalog record.

No index is needed: the product is read with open_catalog and turned into text and image exactly
as the index builder does (product_text, first readable image), then explained with the shipped
encoder, by the default method (occlusion; `--method decomposition` for the exact split). Re-run
it after the encoder's weights change to refresh the README's numbers; it writes
docs/explain/<id>.png and .json, which git ignores (they hold the catalog's photo and record):

    .venv/bin/python benchmarks/explain_example.py --catalog ../shared/data/myntra --product 34578 --query "red dress"
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_product(catalog_path: Path, product_id: str):
    from moonsearch.catalog import open_catalog
    from moonsearch.errors import MoonsearchError

    for product in open_catalog(catalog_path).products():
        if product.id == product_id:
            return product
    raise MoonsearchError(f"no product with id '{product_id}' in {catalog_path}")


def markdown_words(payload: dict, top: int) -> str:
    """The top words as a Markdown table, for pasting into the README."""
    words = sorted(payload["words"], key=lambda w: -w["weight"])[:top]
    key, label = ("drop", "score drop when left out") if payload["method"] == "occlusion" else ("term", "score term")
    lines = [f"| word | weight | {label} |", "|---|---:|---:|"]
    lines += [f"| {w['word']} | {w['weight']:.3f} | {w[key]:+.4f} |" for w in words]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "myntra")
    parser.add_argument("--product", default="34578")
    parser.add_argument("--query", default="red dress")
    parser.add_argument("--encoder", default="moon-lite")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "explain")
    parser.add_argument("--scale", type=int, default=4, help="The catalog's photos are 60x80; 4x is readable.")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--method", choices=("occlusion", "decomposition"), default=None,
                        help="Default: explain()'s default, occlusion.")
    args = parser.parse_args(argv)

    import torch
    from rich.console import Console

    from moonsearch.encoder.registry import load_encoder
    from moonsearch.explain import DEFAULT_METHOD, explain, product_from_record
    from moonsearch.explain.display import render

    torch.set_num_threads(1)
    product = product_from_record(find_product(args.catalog, args.product))
    method = args.method or DEFAULT_METHOD
    result = explain(load_encoder(args.encoder, device="cpu"), product, text=args.query, method=method)
    args.out.mkdir(parents=True, exist_ok=True)
    png = result.save_heatmap(args.out / f"{args.product}.png", scale=args.scale)
    payload = result.to_json()
    command = [".venv/bin/python", "benchmarks/explain_example.py", "--catalog", "../shared/data/myntra",
               "--product", args.product, "--query", args.query] + (["--method", args.method] if args.method else [])
    image = payload["product"]["image"]
    payload["product"]["image"] = str(Path(image).relative_to(args.catalog.resolve())) if image else None
    payload.update(heatmap=str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png),
                   heatmap_scale=args.scale, made_by=shlex.join(command))
    (args.out / f"{args.product}.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    Console(width=110, file=sys.stderr).print(render(result, top=args.top))
    print(f"method: {result.method}" + (" (the default)" if args.method is None else "")
          + (f"; {result.note}" if result.note else ""))
    print(markdown_words(payload, args.top))
    print(f"\nwrote {png} ({png.stat().st_size // 1024} KB) and {args.out / (args.product + '.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
