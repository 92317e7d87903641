"""Image queries from changed photos (issue 16): every `test` product's photo, changed by each
of `moonsearch.photos.TRANSFORMS`, is an image-only query against all `test` products embedded
as the index embeds them; the product itself is the answer. R@1 and R@10 per change, beside the
frozen EfficientNet-Lite0 tower's pooled features (no training) as the reference.
`moonsearch eval myntra` runs the same task on the first 1,000 photos (CI's floors); this runs
all of them and writes benchmarks/results/robustness.json and .md:

    .venv/bin/python benchmarks/robustness.py                        # the shipped encoder, test
    .venv/bin/python benchmarks/robustness.py --split myntra-val --encoder runs/x/moon-lite.safetensors
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


class MirrorAveraged:
    """An encoder whose image-only queries are the normalised mean of the photo's embedding and
    its mirror image's: a query-time trick, measured here before any default uses it. Products
    (text + image, `encode_views`) are embedded by the encoder itself, as the index does."""

    def __init__(self, inner):
        self.inner = inner

    def encode(self, texts, images):
        return self._averaged(self.inner.encode, texts, images)

    def encode_queries(self, texts, images):
        return self._averaged(self.inner.encode_queries, texts, images)

    @staticmethod
    def _averaged(encode, texts, images):
        from PIL import ImageOps

        plain = np.asarray(encode(texts, images), np.float32)
        mirrored = [ImageOps.mirror(im) if im is not None and text is None else im for text, im in zip(texts, images)]
        both = plain + np.asarray(encode(texts, mirrored), np.float32)
        return both / np.linalg.norm(both, axis=1, keepdims=True)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def without_frame_trim() -> None:
    """Photos (catalog and query) keep their plain frames: what --no-trim measures."""
    from moonsearch.encoder import pixels

    pixels.trim_plain_frame = lambda image, *a, **k: image


def products_of(data: Path, split: str) -> list:
    from moonsearch.eval.protocols import myntra

    if split == "myntra-val":   # held-out train products: the ones to choose by
        skip, size = myntra.VALIDATION_SKIP, myntra.VALIDATION_SIZE
        return myntra.load_split(data, split="train", limit=skip + size)[skip:]
    return myntra.load_split(data, split="test")


def measure(encoder, products: list, limit: int | None = None, reference_size=None, identity=None) -> dict:
    """`identity`: the photo identity model an index built now holds vectors of (None: an index
    without the identity channel, image queries through the encoder)."""
    from moonsearch.catalog.inputs import model_input
    from moonsearch.eval import robustness

    inputs = [model_input(p) for p in products]   # each product as the index embeds it
    images, texts = [given.image for given in inputs], [given.text for given in inputs]
    failures = sum(1 for p, im in zip(products, images) if p.images and im is None)
    candidates = np.concatenate([encoder.encode_views(texts[i:i + 64], images[i:i + 64]).mm
                                 for i in range(0, len(products), 64)])
    rows = [i for i, im in enumerate(images) if im is not None][:limit]
    channel = None if identity is None else robustness.PhotoChannel.of(identity, images)
    result = robustness.run(encoder, [images[i] for i in rows], [str(products[i].id) for i in rows], candidates, rows,
                            reference_size=reference_size, channel=channel)
    return {**result, "image_failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "myntra")
    parser.add_argument("--encoder", default="moon-lite")
    parser.add_argument("--split", choices=("test", "myntra-val"), default="test")
    parser.add_argument("--limit", type=int, help="changed photos per transform (default: all)")
    parser.add_argument("--products", type=int,
                        help="a seeded sample of N products as the whole candidate set (the issue's table used 300; "
                             "default: every product of the split)")
    parser.add_argument("--reference-size", type=lambda v: tuple(int(x) for x in v.lower().split("x")),
                        help="WIDTHxHEIGHT for the frozen-tower reference (default: the encoders' 96x128): "
                             "how much of its robustness is input resolution")
    parser.add_argument("--mirror-average", action="store_true",
                        help="embed each query photo as the mean of it and its mirror image (query-time trick)")
    parser.add_argument("--identity", default="shipped",
                        help="photo identity weights (.safetensors) the index holds vectors of; 'shipped' (default): "
                             "the shipped model, as `moonsearch index` builds; 'none': an index without identity vectors")
    parser.add_argument("--no-trim", action="store_true",
                        help="do not trim plain frames off photos (catalog and query), to measure what trimming does")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.data / "products.jsonl").is_file():
        raise SystemExit(f"no catalog at {args.data} (this benchmark needs ../shared/data/myntra)")

    from moonsearch.encoder.registry import load_encoder
    from moonsearch.eval import robustness

    if args.no_trim:
        without_frame_trim()
    encoder = load_encoder(args.encoder)
    identity = None
    if args.identity != "none":
        from moonsearch.encoder import photo_identity

        identity = photo_identity.PhotoIdentity.load(None if args.identity == "shipped" else Path(args.identity))
    if args.mirror_average:
        encoder = MirrorAveraged(encoder)
    products = products_of(args.data, args.split)
    if args.products:   # fewer candidates make each query easier: R@1 is only comparable at one N
        products = random.Random(0).sample(products, min(args.products, len(products)))
    started = time.time()
    result = measure(encoder, products, args.limit, args.reference_size, identity)
    out = {"encoder": encoder.encoder_id, "photo_query": encoder.photo_query_id,
           "identity": identity.id if identity else None, "trim": not args.no_trim, "split": args.split,
           "products": len(products), **result,
           "seconds": round(time.time() - started, 1),
           "made_by": "python benchmarks/robustness.py" + (f" --split {args.split}" if args.split != "test" else "")
                      + (f" --encoder {args.encoder}" if args.encoder != "moon-lite" else "")
                      + (f" --limit {args.limit}" if args.limit else "")
                      + (f" --products {args.products}" if args.products else "")
                      + (" --mirror-average" if args.mirror_average else "")
                      + (f" --identity {args.identity}" if args.identity != "shipped" else "")
                      + (" --no-trim" if args.no_trim else "")
                      + (f" --reference-size {args.reference_size[0]}x{args.reference_size[1]}" if args.reference_size else "")}
    name = ("robustness" + (f"-{args.split}" if args.split != "test" else "") + (f"-{args.products}" if args.products else "")
            + (f"-ref{args.reference_size[0]}x{args.reference_size[1]}" if args.reference_size else "")
            + ("-mirror-average" if args.mirror_average else "")
            + ("-no-identity" if args.identity == "none" else "" if args.identity == "shipped" else f"-{Path(args.identity).stem}")
            + ("-no-trim" if args.no_trim else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(
        f"# Image queries from changed photos ({args.split})\n\nEncoder `{out['encoder']}`"
        + (f" with photo-query head `{out['photo_query']}`" if out["photo_query"] else "")
        + (f" and photo identity channel `{out['identity']}` (image-only queries rank by it)" if out["identity"] else
           "; no photo identity channel")
        + ("" if out["trim"] else "; plain frames not trimmed") + f"; {out['queries']} "
        f"query photos per change against {out['products']} products; made by `{out['made_by']}`.\n\n"
        + robustness.table(out))
    print(robustness.table(out))


if __name__ == "__main__":
    main()
