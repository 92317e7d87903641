"""Indexing throughput: moonsearch's default encoder vs a ViT-B-32 CLIP pipeline, same products.

    python benchmarks/speed/indexing_throughput.py [--products 2000] [--data ../shared/data/myntra]

On the same first N Myntra products, in one process, one after the other:

  (a) pipeline   moonsearch's default encoder through the real `build_index` (read JSONL, decode,
                 preprocess, encode, write FAISS + DuckDB), products/s end to end;
  (b) bare       the same encoder's towers + heads alone, on images already decoded and turned into
                 tensors and texts already tokenized, same batch size: the ceiling of (a);
  (c) ViT-B-32   a CLIP ViT-B-32 image+text pipeline with random weights (its speed does not
                 depend on the weights): decode the same images, resize/crop to 224x224, tokenize,
                 encode image and text, fuse.

(c) uses open_clip when it is importable. It is not in moonsearch's venv: open_clip needs
torchvision, and PyPI's torchvision does not import beside the torch 2.13.0 CPU wheel
("operator torchvision::nms does not exist"). Then the same architecture is built here in plain
torch (ViT-B/32: 224 input, patch 32, width 768, 12 layers, 12 heads; text: context 77, width
512, 12 layers, 8 heads, vocab 49408; embed dim 512; 151,277,313 parameters, as open_clip's
`create_model('ViT-B-32')`), with open_clip's eval preprocessing (bicubic resize of the short
side, centre crop, CLIP mean/std) in PIL + numpy, and token ids from a word hash instead of
CLIP's BPE: the text tower always runs over all 77 positions, so the ids do not change its cost.
The output says which one ran.

Model loading is outside every timer (each model is warmed on one batch first). The numbers are
meant as ratios within one run: other load on the machine moves all three together.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import default_data, machine_block, markdown_table  # noqa: E402

from moonsearch import threads as thread_policy  # noqa: E402

PARTS = ("pipeline", "serial", "torch", "bare", "vitb32")
DEFAULT_PARTS = ("pipeline", "serial", "torch", "bare")   # vitb32 (7+ min) only when asked
QUICK_PRODUCTS = 64

# ---------------------------------------------------------------------------------------------
# ViT-B-32 CLIP in plain torch, for when open_clip cannot be imported.

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_IMAGE_SIZE = 224
CLIP_CONTEXT = 77
CLIP_VOCAB = 49408
CLIP_SOT, CLIP_EOT = 49406, 49407


class _Block(nn.Module):
    """Pre-LN transformer block, laid out as open_clip's ResidualAttentionBlock (GELU MLP x4)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _VisionTower(nn.Module):
    def __init__(self, size=224, patch=32, width=768, layers=12, heads=12, out_dim=512):
        super().__init__()
        grid = size // patch
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width ** -0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out_dim) * width ** -0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)                       # (B, 49, width)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x[:, 0]) @ self.proj


class _TextTower(nn.Module):
    def __init__(self, vocab=49408, context=77, width=512, layers=12, heads=8, out_dim=512):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(context, width) * 0.01)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, out_dim) * width ** -0.5)
        causal = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        for block in self.blocks:
            x = block(x, self.causal_mask)
        x = self.ln_final(x)
        eot = tokens.argmax(dim=-1)  # CLIP pools at the end-of-text token, the largest id
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


class PlainViTB32(nn.Module):
    """CLIP ViT-B-32 with open_clip's attribute names where it costs nothing."""

    def __init__(self):
        super().__init__()
        self.visual = _VisionTower()
        self.text = _TextTower()
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)


def clip_preprocess(image: Image.Image) -> torch.Tensor:
    """open_clip's eval transform: bicubic resize of the short side to 224, centre crop, CLIP norm."""
    w, h = image.size
    scale = CLIP_IMAGE_SIZE / min(w, h)
    new_w, new_h = max(CLIP_IMAGE_SIZE, int(w * scale)), max(CLIP_IMAGE_SIZE, int(h * scale))
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = round((new_w - CLIP_IMAGE_SIZE) / 2), round((new_h - CLIP_IMAGE_SIZE) / 2)
    image = image.crop((left, top, left + CLIP_IMAGE_SIZE, top + CLIP_IMAGE_SIZE))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]", re.IGNORECASE)


def hash_tokenize(texts: list[str]) -> torch.Tensor:
    """(B, 77) ids laid out as CLIP's (start, words, end, zero padding); ids from a word hash."""
    out = torch.zeros((len(texts), CLIP_CONTEXT), dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [zlib.crc32(w.lower().encode()) % (CLIP_SOT - 1) + 1 for w in _WORD.findall(text)]
        ids = [CLIP_SOT, *ids[: CLIP_CONTEXT - 2], CLIP_EOT]
        out[row, : len(ids)] = torch.tensor(ids)
    return out


@dataclass
class ClipPipeline:
    model: nn.Module
    preprocess: object
    tokenize: object
    source: str


def load_vitb32() -> ClipPipeline:
    """open_clip's model and transforms when importable, else the plain-torch build above."""
    torch.manual_seed(0)
    try:
        import open_clip
    except Exception as exc:  # ImportError, or torchvision's RuntimeError on a mismatched torch
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ClipPipeline(PlainViTB32().eval(), clip_preprocess, hash_tokenize,
                            f"plain-torch ViT-B-32 (open_clip not importable here: {reason})")
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    return ClipPipeline(model, preprocess, tokenizer, f"open_clip {open_clip.__version__} ViT-B-32")


# ---------------------------------------------------------------------------------------------
# The products


def subset_catalog(data: Path, n: int, workdir: Path) -> Path:
    """The first n records of the catalog in a temp folder; images are reached through a link."""
    source = data / "products.jsonl"
    out = workdir / "catalog"
    out.mkdir()
    with open(source, encoding="utf-8") as src, open(out / "products.jsonl", "w", encoding="utf-8") as dst:
        taken = 0
        for line in src:
            if not line.strip():
                continue
            dst.write(line)
            taken += 1
            if taken == n:
                break
    (out / "images").symlink_to((data / "images").resolve(), target_is_directory=True)
    return out


def load_products(catalog: Path):
    from moonsearch.catalog import open_catalog

    return list(open_catalog(catalog).products())


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------
# The three measurements


def warm_encoder(encoder, products) -> None:
    """Load both towers and run them once, so (a) and (b) time encoding, not model loading."""
    from moonsearch.catalog import first_image
    from moonsearch.catalog.inputs import product_text

    sample = products[: min(8, len(products))]
    images = [first_image(p.images)[0] for p in sample]
    encoder.encode_views([product_text(p.title, p.attributes) for p in sample], images)


def run_pipeline(encoder, catalog: Path, workdir: Path, batch_size: int, threads: int | None = None,
                 overlap: bool = True, sort_by_length: bool = True) -> dict:
    """build_index end to end; overlap/sort off is the serial loop the builder had before."""
    from moonsearch.index.builder import build_index

    summary = build_index(catalog, workdir / "index", encoder=encoder, index_type="auto",
                          device="cpu", batch_size=batch_size, threads=threads, overlap=overlap,
                          sort_by_length=sort_by_length)
    how = "decode overlapped, sorted by text length" if overlap and sort_by_length else "serial loop"
    return {"products": summary.products, "seconds": summary.seconds,
            "note": f"{how}; {summary.with_image} with image, {summary.index_type} index"}


def run_torch(args, n: int) -> dict:
    """Today's torch path: the serial loop with MOONSEARCH_ONNX=0, in its own process, since the
    encoder chooses its runtime when it loads; at --torch-threads (1: torch's best on this busy
    machine, so the speedup is not inflated by oversubscribed torch threads)."""
    import os
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "torch.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--parts", "serial", "--products", str(n),
                "--data", str(args.data), "--batch-size", str(args.batch_size), "--encoder", args.encoder,
                "--no-machine", "--json", str(out), "--threads", str(args.torch_threads)]
        subprocess.run(argv, check=True, env={**os.environ, "MOONSEARCH_ONNX": "0"}, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())["results"]["serial"]
    result["note"] = f"MOONSEARCH_ONNX=0 (torch towers), {args.torch_threads} thread(s), " + result["note"]
    return result


def _baseline_forward(encoder):
    """Towers + heads on ready tensors, for encoders built like the baseline; None otherwise."""
    heads = getattr(encoder, "heads", None)
    if heads is None or not hasattr(heads, "embed_images") or not hasattr(heads, "embed_texts"):
        return None
    towers = encoder.towers

    @torch.inference_mode()
    def forward(pixels: torch.Tensor | None, tokens: dict, image_rows: list[int], n: int) -> torch.Tensor:
        states = towers.text.net(**tokens).last_hidden_state
        weights = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = nn.functional.normalize((states * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)
        fused = heads.embed_texts(pooled)
        if pixels is not None:
            image_emb = torch.zeros_like(fused)
            image_emb[image_rows] = heads.embed_images(towers.image.pooled(pixels))
            fused = heads.fuse(image_emb, fused)
        return fused

    return forward


def with_build_channels(encoder):
    """The encoder as a default build embeds with it: wrapped with the photo identity model where
    the weights ship (moonsearch.encoder.photo_identity), so (a) / (b) compares like with like."""
    from moonsearch.encoder import photo_identity

    if not photo_identity.enabled_by_default():
        return encoder
    return photo_identity.WithIdentity(encoder, photo_identity.PhotoIdentity.load())


def run_bare(encoder, products, batch_size: int) -> dict:
    """Decode, preprocess and tokenize everything first; time only the forward passes."""
    from moonsearch.catalog import first_image
    from moonsearch.catalog.inputs import product_text
    from moonsearch.encoder.towers import IMAGE_SIZE, image_to_tensor, letterbox

    forward = _baseline_forward(encoder)
    prepared = []
    for batch in batches(products, batch_size):
        images = [first_image(p.images)[0] for p in batch]
        texts = [product_text(p.title, p.attributes) for p in batch]
        rows = [i for i, im in enumerate(images) if im is not None]
        if forward is not None:
            pixels = torch.stack([image_to_tensor(images[i]) for i in rows]) if rows else None
            prepared.append((pixels, encoder.towers.text.tokenize(texts), rows, len(batch)))
        else:  # any other encoder: hand it images already letterboxed to the tower's size
            boxed = [None if im is None else letterbox(im, IMAGE_SIZE) for im in images]
            prepared.append((texts, boxed))
    if forward is not None:
        forward(*prepared[0])
        start = time.perf_counter()
        for item in prepared:
            forward(*item)
        note = "towers + heads on ready tensors"
    else:
        # the same batches the pipeline encodes: chunks of CHUNK_BATCHES batches sorted by text length
        from moonsearch.index.builder import CHUNK_BATCHES, _encode_chunk

        chunks, texts, boxed = [], [], []
        for item_texts, item_boxed in prepared:
            texts += item_texts
            boxed += item_boxed
            if len(texts) >= batch_size * CHUNK_BATCHES:
                chunks.append((texts, boxed))
                texts, boxed = [], []
        if texts:
            chunks.append((texts, boxed))
        start = time.perf_counter()
        for texts, boxed in chunks:
            _encode_chunk(encoder, texts, boxed, batch_size, True)
        note = (f"{type(encoder).__name__}.encode_views on letterboxed images, batches sorted by text length "
                "as the pipeline's (tensor conversion, tokenizing included)")
    return {"products": len(products), "seconds": time.perf_counter() - start, "note": note}


def run_vitb32(clip: ClipPipeline, products, batch_size: int) -> dict:
    """Decode, preprocess, tokenize and encode image + text per batch, all inside the timer."""
    from moonsearch.catalog.inputs import product_text

    def encode(batch) -> np.ndarray:
        images, rows = [], []
        for i, product in enumerate(batch):
            if not product.images:  # no photo: the product is encoded from its text alone
                continue
            try:
                with Image.open(product.images[0]) as raw:
                    images.append(clip.preprocess(raw.convert("RGB")))
                rows.append(i)
            except (OSError, ValueError):  # missing or broken image: text only
                pass
        tokens = clip.tokenize([product_text(p.title, p.attributes) for p in batch])
        with torch.inference_mode():
            text = nn.functional.normalize(clip.model.encode_text(tokens), dim=-1)
            if rows:
                image = torch.zeros_like(text)
                image[rows] = nn.functional.normalize(clip.model.encode_image(torch.stack(images)), dim=-1)
                text = nn.functional.normalize(text + image, dim=-1)
        return text.numpy()

    encode(products[: min(batch_size, 8)])  # warm-up
    start = time.perf_counter()
    for batch in batches(products, batch_size):
        encode(batch)
    params = sum(p.numel() for p in clip.model.parameters())
    return {"products": len(products), "seconds": time.perf_counter() - start,
            "note": f"{params:,} parameters"}


# ---------------------------------------------------------------------------------------------


def rate(result: dict) -> float:
    return result["products"] / result["seconds"] if result["seconds"] else float("nan")


def report(results: dict, encoder_name: str, clip_source: str | None, batch_size: int) -> str:
    labels = {
        "pipeline": (f"(a) moonsearch `{encoder_name}`, `build_index` end to end",
                     "read JSONL, decode, letterbox 96x128, tokenize, encode, write FAISS + DuckDB"),
        "serial": (f"(a0) moonsearch `{encoder_name}`, `build_index` serial loop",
                   "as (a), decoding before encoding, batches in catalog order (the builder before issue 17)"),
        "torch": (f"(t) moonsearch `{encoder_name}` on torch, serial loop",
                  "as (a0) with MOONSEARCH_ONNX=0: today's torch path"),
        "bare": (f"(b) moonsearch `{encoder_name}`, bare forward pass",
                 "forward only; inputs decoded, preprocessed, tokenized beforehand"),
        "vitb32": ("(c) CLIP ViT-B-32 image+text, random weights",
                   "decode, resize+crop 224x224, tokenize (77), encode image + text"),
    }
    rows = [[labels[k][0], labels[k][1], r["products"], f"{r['seconds']:.2f}", f"{rate(r):.1f}", r["note"]]
            for k, r in results.items()]
    out = [f"### Indexing throughput (batch size {batch_size}, CPU, {torch.get_num_threads()} torch threads, "
           f"thread policy {thread_policy.current().describe()})",
           markdown_table(["what", "timed", "products", "seconds", "products/s", "note"], rows)]
    ratio_rows = [  # (numerator, denominator, label, format)
        ("pipeline", "vitb32", "(a) / (c): default pipeline vs ViT-B-32 pipeline", "{:.2f}x"),
        ("bare", "vitb32", "(b) / (c): default bare forward vs ViT-B-32 pipeline", "{:.2f}x"),
        ("pipeline", "bare", "(a) / (b): pipeline vs its bare forward (share of the ceiling reached)", "{:.2f}"),
        ("pipeline", "serial", "(a) / (a0): overlapped and sorted vs serial loop", "{:.2f}x"),
        ("pipeline", "torch", "(a) / (t): speedup over today's torch path (target >= 2.5)", "{:.2f}x"),
    ]
    ratios = [[label, fmt.format(rate(results[top]) / rate(results[bottom]))]
              for top, bottom, label, fmt in ratio_rows if top in results and bottom in results]
    if ratios:
        out.append(markdown_table(["ratio", "value"], ratios))
    if clip_source is not None:
        out.append(f"ViT-B-32 implementation: {clip_source}.")
    return "\n\n".join(block.strip() for block in out) + "\n"


def summary(results: dict) -> dict:
    """latency.json's "indexing" block."""
    def r(part):
        return round(rate(results[part]), 2) if part in results else None

    out = {"products_per_s": r("pipeline"), "torch_products_per_s": r("torch"),
           "serial_products_per_s": r("serial"), "bare_products_per_s": r("bare")}
    out["speedup"] = round(out["products_per_s"] / out["torch_products_per_s"], 2) \
        if out["products_per_s"] and out["torch_products_per_s"] else None
    out["bare_ratio"] = round(out["products_per_s"] / out["bare_products_per_s"], 3) \
        if out["products_per_s"] and out["bare_products_per_s"] else None
    out["products"] = next((v["products"] for v in results.values()), None)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="Myntra catalog folder")
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--threads", type=int,
                        help="intra-op threads for every runtime [moonsearch's indexing thread policy]")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the parts this many times, interleaved, and keep each one's best [1]")
    parser.add_argument("--torch-threads", type=int, default=1, help="threads of the torch path (t) [1]")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} [{','.join(DEFAULT_PARTS)}]")
    parser.add_argument("--quick", action="store_true", help=f"tiny scale ({QUICK_PRODUCTS} products): a smoke run")
    parser.add_argument("--no-machine", action="store_true", help="leave out the machine block (run_all prints it)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    n = QUICK_PRODUCTS if args.quick else args.products
    if not (args.data / "products.jsonl").is_file() or not (args.data / "images").is_dir():
        sys.exit(f"Myntra catalog not found at {args.data} (needs products.jsonl and images/); pass --data")

    thread_policy.for_indexing(args.threads)   # torch and FAISS for the bare and ViT parts too
    if not args.no_machine:
        print(machine_block())
    from moonsearch.encoder.registry import load_encoder

    results: dict[str, dict] = {}
    clip_source = None
    workdir = Path(tempfile.mkdtemp(prefix="moonsearch-indexing-bench-"))
    try:
        catalog = subset_catalog(args.data, n, workdir)
        products = load_products(catalog)
        print(f"{len(products)} products: the first {n} records of {args.data / 'products.jsonl'}", file=sys.stderr)
        encoder = None
        if {"pipeline", "serial", "bare"} & set(parts):
            encoder = load_encoder(args.encoder, device="cpu")
            warm_encoder(encoder, products)
        for round_ in range(args.rounds):
            for part in PARTS:
                if part not in parts or (part == "vitb32" and round_):
                    continue
                print(f"running {part} (round {round_ + 1} of {args.rounds}) ...", file=sys.stderr)
                if part == "pipeline":
                    result = run_pipeline(encoder, catalog, workdir, args.batch_size, args.threads)
                elif part == "serial":
                    result = run_pipeline(encoder, catalog, workdir, args.batch_size, args.threads,
                                          overlap=False, sort_by_length=False)
                elif part == "torch":
                    result = run_torch(args, n)
                elif part == "bare":   # the same forward passes a build makes, the identity channel's too
                    result = run_bare(with_build_channels(encoder), products, args.batch_size)
                else:
                    clip = load_vitb32()
                    clip_source = clip.source
                    result = run_vitb32(clip, products, args.batch_size)
                    del clip
                # the best round: other jobs only ever slow a run down
                if part not in results or rate(result) > rate(results[part]):
                    results[part] = result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    name = getattr(encoder, "name", args.encoder) if encoder is not None else args.encoder
    print(report(results, name, clip_source, args.batch_size))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "vitb32": clip_source, "indexing": summary(results),
                                         "threads": thread_policy.current().describe()}, indent=2))


if __name__ == "__main__":
    main()
