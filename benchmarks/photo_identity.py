"""The photo identity channel's ablation (issue 16): for identity weights (shipped, a trained
file, or a training checkpoint), R@1 / R@10 of every robustness change and of i2mm's held-out
view (mirrored, 90% centre crop), ranked as the index ranks image-only queries
(moonsearch.encoder.photo_identity), for several weights of the product-vector cosine in the
fused score; beside the index without the identity channel (the encoder and its photo head).
`--no-trim` leaves plain frames on the photos (catalog and query) to show what trimming does;
`--zoom` and `--zoom-penalty` try other shrunk query views (`--zoom ""`: none); `--no-white-point`
leaves a dimmed query photo's grey background as it is (photos.restore_white).
Choices are made on myntra-val (the default); `--split test` is the final measurement.

    .venv/bin/python benchmarks/photo_identity.py --checkpoint runs/photo-identity/photo-identity.checkpoint.pt
    .venv/bin/python benchmarks/photo_identity.py                      # the shipped weights, myntra-val
    .venv/bin/python benchmarks/photo_identity.py --split test --limit 0 --weights 0

Writes benchmarks/results/photo-identity-<split>[-no-trim].json and .md (--name to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def checkpoint_weights(checkpoint: Path, out: Path) -> Path:
    """A training checkpoint's network as an identity weights file (what training would ship)."""
    import torch
    from safetensors.torch import save_file

    from moonsearch.encoder.identity_net import IdentityNet

    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    config = state["config"]
    net = IdentityNet(cut=int(config["model"]["cut"]), dim=int(config["model"]["dim"]))
    net.load_state_dict(state["model"])
    tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in net.trained_state().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps({"model": config["model"], "training": config,
                                                    "checkpoint_step": state["epoch"]}, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "myntra")
    parser.add_argument("--identity", type=Path, help="identity weights (default: the shipped ones)")
    parser.add_argument("--checkpoint", type=Path, help="a training checkpoint instead of weights")
    parser.add_argument("--split", choices=("myntra-val", "test"), default="myntra-val")
    parser.add_argument("--limit", type=int, default=1000, help="query photos per change (0: all)")
    parser.add_argument("--weights", default="0,0.1,0.25,0.5", help="mm cosine weights to try")
    parser.add_argument("--no-trim", action="store_true")
    parser.add_argument("--zoom", help="shrink factors of the query views, e.g. 1.1,1.2,1.3 [photo_identity.ZOOM_OUT]")
    parser.add_argument("--zoom-penalty", type=float, help="taken off a shrunk view's cosine [ZOOM_PENALTY]")
    parser.add_argument("--no-white-point", action="store_true", help="photo_identity.WHITE_POINT off")
    parser.add_argument("--name", help="results file name [default: photo-identity-<split>[-no-trim]]")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.data / "products.jsonl").is_file():
        raise SystemExit(f"no catalog at {args.data}")
    from robustness import products_of, without_frame_trim

    if args.no_trim:
        without_frame_trim()

    from moonsearch import photos
    from moonsearch.catalog.inputs import model_input
    from moonsearch.encoder.photo_identity import PhotoIdentity
    from moonsearch.encoder.registry import load_encoder
    from moonsearch.eval import robustness
    from moonsearch.eval.protocols.myntra import held_out_view
    from moonsearch.eval.retrieval import embed
    from moonsearch.encoder import photo_identity as photo

    if args.zoom is not None:
        photo.ZOOM_OUT = tuple(float(f) for f in args.zoom.split(",") if f.strip())
    if args.zoom_penalty is not None:
        photo.ZOOM_PENALTY = args.zoom_penalty
    photo.WHITE_POINT = not args.no_white_point
    weights = args.identity
    if args.checkpoint:
        weights = checkpoint_weights(args.checkpoint, args.checkpoint.with_name(args.checkpoint.stem + "-eval.safetensors"))
    identity = PhotoIdentity.load(weights)
    weights = identity.weights.relative_to(REPO) if identity.weights.is_relative_to(REPO) else identity.weights
    encoder = load_encoder("moon-lite")
    products = products_of(args.data, args.split)
    name = args.name or ("photo-identity-" + ("val" if args.split == "myntra-val" else args.split)
                         + ("-no-trim" if args.no_trim else ""))
    started = time.time()
    inputs = [model_input(p) for p in products]
    images, texts = [g.image for g in inputs], [g.text for g in inputs]
    candidate_mm = np.concatenate([encoder.encode_views(texts[i:i + 64], images[i:i + 64]).mm
                                   for i in range(0, len(products), 64)])
    channel = robustness.PhotoChannel.of(identity, images)
    rows = [i for i, im in enumerate(images) if im is not None][:args.limit or None]
    keys = [str(products[i].id) for i in rows]
    tried = [float(w) for w in args.weights.split(",")]
    # which of the query's views (photo.query_views) each row matches: the photo alone, and its
    # mirror image, and the shrunk views too (what the index does)
    shown = {"": "plain", " + mirrored query": "mirrored", " + mirrored and shrunk query": "all"}
    labels = {(w, m): f"identity{label}, mm weight {w:g}" for label, m in shown.items() for w in tried}
    table: dict = {"no identity": {}, **{label: {} for label in labels.values()}}
    changes = {name: robustness.transformed([images[i] for i in rows], keys, name) for name in photos.TRANSFORMS}
    changes["i2mm (held-out view)"] = [held_out_view(images[i]) for i in rows]
    for change, queries in changes.items():
        query_mm = embed(encoder, [None] * len(queries), queries, queries=True)
        table["no identity"][change] = robustness.recall(query_mm, candidate_mm, rows)
        views = identity.embed_query_views(queries)
        penalties = photo.view_penalties()
        mirror = len(views) // 2   # query_views puts the mirror images second
        chosen = {"plain": [0], "mirrored": [0, mirror], "all": list(range(len(views)))}
        for (w, which), label in labels.items():
            ranked = photo.rank_matrix(views[chosen[which]], channel.candidates, query_mm, candidate_mm, w,
                                       photo.PHOTO_DEPTH, channel.has_photo, penalties[chosen[which]])
            table[label][change] = photo.recall_at(ranked, rows)
        print(change, {k: v[change] for k, v in table.items()}, flush=True)
    out = {"identity": identity.id, "weights_file": str(weights), "split": args.split, "encoder": encoder.encoder_id,
           "photo_query": encoder.photo_query_id, "products": len(products), "queries": len(rows),
           "trim": not args.no_trim, "white_point": photo.WHITE_POINT, "zoom_out": list(photo.ZOOM_OUT), "zoom_penalty": photo.ZOOM_PENALTY,
           "results": table, "seconds": round(time.time() - started, 1),
           "made_by": " ".join(["python benchmarks/photo_identity.py", *sys.argv[1:]])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    names = list(changes)
    lines = [f"# Photo identity channel on {args.split}\n",
             f"Identity `{identity.id}` ({weights}); encoder `{encoder.encoder_id}` with photo head "
             f"`{encoder.photo_query_id}`; {len(rows)} query photos per change against {len(products)} products"
             f"{'' if out['trim'] else '; plain frames not trimmed'}"
             f"{'' if out['white_point'] else '; dimmed white backgrounds left grey'}; shrunk query views {photo.ZOOM_OUT}, "
             f"{photo.ZOOM_PENALTY:g} off their cosine; made by `{out['made_by']}`. R@1 (R@10).\n",
             "| ranking | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, metrics in table.items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics[n]['R@1']:.3f} ({metrics[n]['R@10']:.3f})" for n in names) + " |")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
