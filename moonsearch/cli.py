"""The `moonsearch` command: index, add, update, delete, compact, query, explain, info, train, eval.

Every subcommand is a thin shell over the Python API. Errors the user can fix are printed as
one clear line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from moonsearch.errors import MoonsearchError
from moonsearch.locations import (SHARED_DATA, SHOPPER_QUERIES_FILE, default_dataset, default_index, index_folder_for,
                                  shopper_queries_beside)
from moonsearch.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Product retrieval by text, image, or both (MOON2.0).")
# Results go to stdout; piped output gets a wide table rather than rich's 80-column default.
out_console = console.__class__(width=None if sys.stdout.isatty() else 160)


@app.command()
def index(
    catalog: Path = typer.Argument(..., help="Catalog folder or file (JSONL, CSV, Parquet, Kaggle styles.csv)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Index folder [default: indexes/<catalog name>]."),
    encoder: str = typer.Option("default", help="Encoder name (see `moonsearch info --encoders`), or the folder of a trained MLLM encoder."),
    index_type: str = typer.Option("auto", "--index-type", help="auto | flat | ivf | hnsw."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    keyword_weights: Optional[str] = typer.Option(
        None, "--keyword-weights", help="BM25 field weights, e.g. title=2,attributes=1 [default: moonsearch's]."),
    store: str = typer.Option("faiss+duckdb", "--store", help="faiss+duckdb (in the index folder) | milvus (needs --uri and the [scale] extra)."),
    uri: Optional[str] = typer.Option(None, "--uri", help="With --store milvus: a milvus-lite file (./moonsearch.db) or a server (http://host:19530)."),
    engine: str = typer.Option("local", "--engine", help="local (this process encodes) | ray (a Ray Data actor pool; the [scale] extra)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: a Ray cluster (host:port, ray://host:port, auto) [default: start a local Ray]."),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", help="With --engine ray: encoder actors [default: one per GPU, else one per CPU]."),
    identity: Optional[bool] = typer.Option(None, "--identity/--no-identity", help="Store each product image's photo identity vector, which image-only queries rank by [default: on where its weights ship, either engine; off with MOONSEARCH_IDENTITY=0]."),
):
    """Index a product catalog into FAISS + DuckDB (or Milvus + DuckDB with --store milvus)."""
    from moonsearch.index.builder import build_index, encoding_engine
    from moonsearch.store.files import SKIPS_FILE

    out = out or index_folder_for(catalog)
    encoding = encoding_engine(engine, address, ray_workers)
    summary = build_index(catalog, out, encoder=encoder, index_type=index_type, device=device,
                          batch_size=batch_size, keyword_weights=keyword_weights, store=store, uri=uri,
                          engine=encoding, identity=identity)
    images = f"{summary.images} images embedded" + (
        f", {summary.image_failures} not loaded" if summary.image_failures else "")
    console.print(
        f"[bold green]indexed[/] {summary.products} products into {out} "
        f"({summary.with_image} with image, {summary.text_only} text-only, {summary.skipped} skipped; {images}) "
        f"in {summary.seconds:.1f}s = {summary.products_per_second:.1f} products/s; "
        f"index {summary.index_type}, {summary.placement}" + (f"; encoded by {encoding.plan}" if encoding else "")
    )
    if summary.report:
        console.print(f"report of skipped rows, text-only products and images not loaded: {out / SKIPS_FILE}")
        for entry in summary.report[:5]:
            console.print(f"  {entry['kind']}: {entry['source']} {entry['id'] or ''} - {entry['reason']}")
        if len(summary.report) > 5:
            console.print(f"  ... {len(summary.report) - 5} more")


def _write(index_path: Optional[Path], device: str, verb: str, change) -> None:
    """One write command: the index's writer (its lock and encoder check) around `change(writer)`,
    then what the write did."""
    from moonsearch.index.live import open_writer

    folder = index_path or default_index()
    with open_writer(folder, device=device) as writer:
        summary = change(writer)
    _write_report(verb, folder, summary)


def _write_report(verb: str, folder: Path, summary) -> None:
    console.print(f"[bold green]{verb}[/] {folder}: {summary.added} added, {summary.replaced} replaced, "
                  f"{summary.unchanged} unchanged, {summary.deleted} deleted ({summary.encoded} encoded"
                  + (f", {summary.skipped} rows skipped" if summary.skipped else "")
                  + f") in {summary.seconds:.1f}s; now state {summary.generation}")
    for entry in summary.report[:5]:
        console.print(f"  {entry['kind']}: {entry.get('id') or ''} {entry.get('reason', '')}".rstrip())
    if len(summary.report) > 5:
        console.print(f"  ... {len(summary.report) - 5} more")


@app.command()
def add(
    catalog: Path = typer.Argument(..., help="Catalog folder or file whose products are added (or replace those with the same id)."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (the encoder)."),
):
    """Add a catalog's products to an index, replacing products with the same id (re-encoded)."""
    _write(index_path, device, "added to", lambda writer: writer.add_catalog(catalog))


@app.command()
def update(
    catalog: Path = typer.Argument(..., help="The catalog the index should hold from now on."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (the encoder)."),
):
    """Make an index match a catalog: new and changed products encoded, unchanged ones kept
    (same content hash of record and image bytes), products the catalog lacks removed."""
    _write(index_path, device, "updated", lambda writer: writer.update(catalog))


@app.command()
def delete(
    ids: List[str] = typer.Argument(None, metavar="[ID]...", help="Product ids to remove."),
    filters: List[str] = typer.Option([], "--filter", help="Remove every product matching all these filters (as in `query`)."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (the encoder is checked against the index)."),
):
    """Remove products from an index by id or by filter."""
    if not ids and not filters:
        raise MoonsearchError("delete needs product ids or --filter (e.g. `moonsearch delete S0001` or --filter brand=Lumora)")
    _write(index_path, device, "deleted from", lambda writer: writer.delete(ids or (), filters))


@app.command()
def compact(
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    index_type: str = typer.Option("auto", "--index-type", help="auto | flat | ivf | hnsw (auto: as `index` chooses for today's size)."),
):
    """Rebuild an index's vector structures from its stored vectors, nothing re-encoded: after
    many writes, or once it outgrew the flat threshold."""
    from moonsearch.index.live import open_writer

    folder = index_path or default_index()
    with open_writer(folder, device="cpu") as writer:
        summary = writer.compact(index_type)
    manifest_type = json.loads((Path(folder) / "manifest.json").read_text()).get("index_type")
    console.print(f"[bold green]compacted[/] {folder}: {manifest_type} vectors rebuilt in {summary.seconds:.1f}s; "
                  f"now state {summary.generation}")


def _hits_table(hits, display_fields: list[str], cosines: bool = False) -> Table:
    """One row per product; an image query that matched some product through a later image of
    it adds the image that matched (position: path). When every match is the first image, the
    image column already shows it, and a second copy of every path would only crowd the table.
    `cosines` adds each hit's cosine similarity, for scores that are not cosines (hybrid ranking)
    or a --min-score cut that needs to be seen."""
    matched = any(hit.matched_image_index for hit in hits)
    table = Table(show_lines=False)
    for column in ("#", "score", *(["cosine"] if cosines else []), "id", "title", *display_fields, "image",
                   *(["matched image"] if matched else [])):
        table.add_column(column, overflow="fold")
    for hit in hits:
        values = [str(hit.attributes.get(f, "")) for f in display_fields]
        which = "-" if hit.matched_image_index is None else f"{hit.matched_image_index}: {hit.matched_image}"
        cosine = ["-" if hit.similarity is None else f"{hit.similarity:.3f}"] if cosines else []
        table.add_row(str(hit.rank), f"{hit.score:.3f}", *cosine, hit.id, hit.title, *values, hit.image or "-",
                      *([which] if matched else []))
    return table


@app.command()
def query(
    text: Optional[str] = typer.Argument(None, help="Query text."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image file."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    k: int = typer.Option(10, "--k", min=1, help="How many products to return."),
    filters: List[str] = typer.Option([], "--filter", help="field=value, field=a,b, field!=v, field<n, field>=n; repeatable."),
    view: str = typer.Option("mm", "--view", help="mm (products) | image | text."),
    hybrid: Optional[bool] = typer.Option(None, "--hybrid/--vectors", show_default=False,
                                          help="--hybrid fuses the vectors' ranking with BM25 keyword matches of the "
                                          "query text (exact names, brands, codes; scores become fusion scores); "
                                          "--vectors ranks by cosine similarity alone. [default: hybrid for a "
                                          "text-only query on the mm view, vectors otherwise]"),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout: {query, applied, notes, hits}."),
    no_parse: bool = typer.Option(False, "--no-parse", help="Read the query text verbatim: no spelling rewrites, "
                                  "no price filter from 'under 1000', no gender boost from 'for men'."),
    min_score: Optional[str] = typer.Option(None, "--min-score", metavar="X",
                                            help="Leave out hits whose cosine similarity to the query (JSON: "
                                            "'similarity') is below X, a number from -1 to 1, whatever the ranking; "
                                            "the rest keep their order."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
):
    """Find products by text, by image, or by both. The text is read as shoppers write it: variant
    spellings (tee, tshirt, t shirt) are one word, 'under 1000' filters by price, 'for men'
    boosts men's products; the output says what was applied (--no-parse turns it off)."""
    from moonsearch import open_index

    cut = None
    if min_score is not None:   # checked before the index and encoder load: a typo fails fast, in one line
        try:
            cut = float(min_score)
        except ValueError:
            cut = None
        if cut is None or not -1.0 <= cut <= 1.0:
            raise MoonsearchError(f"--min-score must be a number from -1 to 1 (a cosine similarity), not '{min_score}'")
    searcher = open_index(index_path, device=device)
    ranking = searcher.ranking(text, image, view, hybrid)
    if ranking.note:
        console.print(f"[yellow]{ranking.note}[/]")
    hits = searcher.search(text=text, image=image, k=k, filters=filters, view=view, hybrid=ranking.hybrid,
                           parse=not no_parse, min_score=cut)
    if as_json:
        sys.stdout.write(json.dumps(hits.to_json(), ensure_ascii=False, indent=2) + "\n")
        return
    for line in hits.applied:
        out_console.print(f"applied: {escape(line)}")
    for line in hits.notes:
        console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)   # one line each, as the library wrote it
    if not hits:
        out_console.print("no products match" + (f" with a cosine of at least {cut:g} (--min-score)"
                                                 if cut is not None else ""))
        return
    table = _hits_table(hits, searcher.manifest.display_fields, cosines=ranking.hybrid or cut is not None)
    boosted = " plus 0.02 per boost met" if ranking.hybrid and hits.query and hits.query.boosts else ""
    table.caption = (f"ranked by {ranking.name}: scores are reciprocal-rank fusion scores{boosted} (--vectors: cosines)"
                     if ranking.hybrid else
                     f"ranked by {ranking.name}: scores are photo identity cosine similarities"
                     if ranking.kind == "photo" else "ranked by vectors: scores are cosine similarities")
    if cut is not None:
        table.caption += f"; hits with a cosine below {cut:g} left out (--min-score)"
    out_console.print(table)


@app.command(name="explain")
def explain_command(
    args: List[str] = typer.Argument(..., metavar="[QUERY] PRODUCT_ID", help="Query text (leave out with --image) and a product id."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image file."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder (default: the only one in ./indexes)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Heatmap PNG (default: explain-<PRODUCT_ID>.png)."),
    scale: int = typer.Option(1, "--scale", min=1, max=16, help="Heatmap size as a multiple of the product image's."),
    top: int = typer.Option(15, "--top", min=1, help="How many words to list."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    method: str = typer.Option("occlusion", "--method", help="occlusion: score lost when each word / image patch is "
                               "left out | decomposition: exact additive share of each token (flat for moon-lite)."),
):
    """Why did a product match: the score split over the product's words and image patches."""
    from moonsearch import open_index
    from moonsearch.explain import explain as explain_match

    if len(args) > 2:
        raise MoonsearchError("explain takes a query text and a product id (quote a query of several words)")
    text, product_id = (None, args[0]) if len(args) == 1 else args
    if text is None and image is None:
        raise MoonsearchError("give a query text before the product id, or a query image with --image")
    searcher = open_index(index_path, device=device)
    result = explain_match(searcher, product_id, text=text, image=image, method=method)
    heatmap = None
    if result.image_weights is not None:
        heatmap = result.save_heatmap(out or Path(f"explain-{product_id}.png"), scale=scale)
    if as_json:
        payload = {**result.to_json(), "heatmap": str(heatmap) if heatmap else None}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    from moonsearch.explain.display import render

    out_console.print(render(result, top=top))
    out_console.print(f"heatmap: {heatmap}" if heatmap else "the product has no image: no heatmap")


@app.command()
def info(
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    as_json: bool = typer.Option(False, "--json"),
    encoders: bool = typer.Option(False, "--encoders", help="List the shipped encoders instead."),
    check: bool = typer.Option(False, "--check", help="Verify every file against the checksums the index recorded, "
                               "and read every vector and record (exit 2 naming the first damaged file)."),
):
    """Describe an index: encoder, counts, index type, filterable fields."""
    if encoders:
        from moonsearch.encoder.registry import available_encoders

        out_console.print("\n".join(available_encoders()))
        return
    from moonsearch import open_index

    index = open_index(index_path)
    details = index.info()
    if check:
        details["check"] = index.verify()
    if as_json:
        sys.stdout.write(json.dumps(details, indent=2, default=str) + "\n")
        return
    manifest = details["manifest"]
    table = Table(title=f"index {details['path']}", show_header=False)
    for key in ("encoder", "dim", "index_type", "views", "counts", "source", "created", "format_version", "backend"):
        value = manifest[key]
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    identity = manifest.get("identity")
    table.add_row("photo identity", f"{identity['id']} (image-only queries rank by it)" if identity else
                  "none (image-only queries go through the encoder; rebuild for the photo identity channel)")
    table.add_row("state", f"{manifest['generation']} write(s) since the build"
                  + (f" (files in {manifest['snapshot']})" if manifest["snapshot"] else ""))
    fields = ", ".join(f"{k} ({n})" for k, n in details["filterable_fields"][:25])
    more = len(details["filterable_fields"]) - 25
    table.add_row("filters", fields + (f", ... {more} more" if more > 0 else ""))
    table.add_row("keyword index", "yes (hybrid ranking)" if details["keyword_index"]
                  else "no: text queries rank by vectors only; rebuild for hybrid ranking")
    table.add_row("skip report", str(details["skip_report"]))
    if check:
        verified = details["check"]
        table.add_row("check", f"ok: {verified['files_verified']} files match their checksums, "
                      f"{verified['records']} records and every vector read"
                      if verified["checksums"] else
                      f"ok: {verified['records']} records and every vector read (no checksums recorded: "
                      "the index was written before moonsearch recorded them)")
    out_console.print(table)


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Training catalog (its train split is used; never test)."),
    config: str = typer.Option("moon-lite", "--config", help="Config name in moonsearch/train/configs (moon-lite, baseline, ablations) or a JSON path."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output path without suffix [default: moonsearch/encoder/weights/<the config's \"name\", else its file name>; MLLM: models/<name>; photo-query, text-query: beside its base model's weights, where the base finds it]."),
    backbone_path: Optional[Path] = typer.Option(None, "--backbone-path", help="MLLM configs: local Qwen2-VL / Qwen2.5-VL checkpoint folder (nothing is downloaded)."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the last epoch checkpoint of the same config."),
    device: str = typer.Option("auto", help="auto | cpu | cuda: moon-lite trains on a CUDA GPU when one is visible."),
    init: Optional[str] = typer.Option(None, "--init", help="moon-lite, photo-identity: start from these weights instead of untrained ones (a shipped name such as moon-lite, or a .safetensors path), e.g. to fine-tune the shipped model on your catalog; sets the config's \"init\". photo-query, text-query: the moon-lite model the head is for (its \"base\")."),
):
    """Train an encoder on a catalog's train split (tower features are cached once)."""
    from moonsearch.train.run import train_encoder

    target, report = train_encoder(data, config, out=out, backbone_path=backbone_path, resume=resume,
                                   device=device, init=init)
    console.print(f"[bold green]trained[/] {target} in {report['wall_seconds']['total']}s; "
                  f"last epoch: {report['history'][-1]}")


def _per_query_table(rows: list[dict], title: str) -> Table:
    table = Table(title=f"{title}, worst first")
    for column in ("query", "relevant", "P@10", "nDCG@10", "R@100"):
        table.add_column(column, justify="left" if column == "query" else "right")
    for row in rows:
        table.add_row(row["query"], str(row["relevant"]),
                      *("-" if row[k] is None else f"{row[k]:.3f}" for k in ("P@10", "nDCG@10", "R@100")))
    return table


@app.command(name="eval")
def evaluate(
    protocol: str = typer.Argument(..., help="myntra | myntra-val (held-out train products: choose models here) | "
                                   "mbe2 | m5product | fashion200k | shopper (an index's ranking)."),
    encoders: List[str] = typer.Option(["default"], "--encoder", help="default, baseline, minilm-title, bm25-title, "
                                       "or a trained .safetensors file; repeatable."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder [myntra: ../shared/data/myntra]."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Shopper queries (JSONL with relevance rules) "
                                          "[default: queries/shopper_queries.jsonl beside the data folder]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N items (quick runs)."),
    results_dir: Path = typer.Option(Path("benchmarks/results"), "--results-dir"),
    floors: Optional[Path] = typer.Option(None, "--floors", help="Fail (exit 1) when a metric is below its floor here."),
    index_path: Optional[Path] = typer.Option(None, "--index", help="shopper: the index of ../shared/data/myntra."),
    hybrid: Optional[bool] = typer.Option(None, "--hybrid/--vectors", show_default=False,
                                          help="shopper: rank by vectors + BM25 or by vectors alone [default: as "
                                          "`query` ranks these text queries: hybrid]."),
    as_json: bool = typer.Option(False, "--json"),
    per_query: bool = typer.Option(False, "--per-query", help="Show each shopper query's scores (worst first) "
                                   "and keep them in the results JSON."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (the encoders; rankings are exact, in numpy)."),
):
    """Score encoders on a benchmark protocol; write results JSON and a side-by-side table."""
    from moonsearch.eval.runner import (check_distinct_labels, check_floors, load_floors, run_protocol, write_result,
                                        write_table)

    if protocol == "shopper":
        from moonsearch import open_index
        from moonsearch.eval.shopper import evaluate_shopper_queries

        if floors is not None or encoders != ["default"]:
            raise MoonsearchError("eval shopper scores an index with its own encoder: --encoder and --floors do not apply")
        queries = queries or SHARED_DATA / SHOPPER_QUERIES_FILE
        result = evaluate_shopper_queries(open_index(index_path, device=device), queries, hybrid=hybrid)
        rows = result.pop("per_query")["shopper"]
        if per_query:
            result["per_query"] = {"shopper": rows}
        out_console.print_json(data=result) if as_json else out_console.print(result)
        if per_query and not as_json:
            out_console.print(_per_query_table(rows, f"shopper / {result['encoder']}"))
        return
    if hybrid is not None:
        raise MoonsearchError("--hybrid and --vectors rank through an index: `eval shopper` only")
    check_distinct_labels(protocol, encoders)
    data = data or default_dataset(protocol)
    if data is None:
        raise MoonsearchError(f"{protocol}: pass --data PATH (the dataset's official layout on disk)")
    if protocol == "myntra" and queries is None:
        beside = shopper_queries_beside(data)
        queries = beside if beside.is_file() else None
        if queries is None:
            console.print(f"[yellow]no shopper queries at {beside}: the shopper task is left out (--queries PATH)[/]")
    from moonsearch.encoder.moon import TowerTokenMemo

    floor_table = load_floors(floors) if floors is not None else None   # a bad file fails before the work
    failures = []
    memo = TowerTokenMemo() if len(encoders) > 1 else None
    for name in encoders:
        console.print(f"evaluating [bold]{name}[/] on {protocol} ({data})")
        result = run_protocol(protocol, name, data, limit=limit, queries=queries,
                              device=device, memo=memo)
        rows = result.pop("per_query", {}).get("shopper", [])
        if per_query:
            result["per_query"] = {"shopper": rows}
        if limit is None:
            path = write_result(result, results_dir)
            console.print(f"wrote {path}")
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
        else:
            table = Table(title=f"{protocol} / {result['encoder']} ({result['seconds']}s)")
            table.add_column("task")
            table.add_column("metrics")
            for task, metrics in result["metrics"].items():
                table.add_row(task, "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))))
            out_console.print(table)
            if per_query and rows:
                out_console.print(_per_query_table(rows, f"{protocol} / {result['encoder']}: shopper queries"))
        if floor_table is not None:
            failures += check_floors(result, floor_table)
    if limit is None:
        console.print(f"table: {write_table(results_dir, protocol)}")
    if failures:
        for line in failures:
            console.print(f"[bold red]below floor:[/] {line}")
        raise typer.Exit(1)


@app.command()
def serve(
    index_path: Optional[Path] = typer.Option(None, "--index", help="Index folder [default: the only one in ./indexes]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the bearer token that enables "
                                              "POST/DELETE /products [default: $MOONSEARCH_SERVE_TOKEN; none: writes off]."),
    cors_origin: List[str] = typer.Option([], "--cors-origin", help="Allow browser calls from this origin; repeatable."),
    max_upload_mb: float = typer.Option(8.0, "--max-upload-mb", min=0.01, help="Largest request body (photo upload)."),
    max_image_pixels: int = typer.Option(40_000_000, "--max-image-pixels", min=9, help="Largest query photo, in pixels."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds before a request is answered 503."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Processes serving the port, each with the "
                                "index loaded (about one core each; writes reach every worker within ~1 s)."),
):
    """Serve the HTTP API and the shop page (FastAPI + uvicorn; needs the `serve` extra)."""
    try:
        from moonsearch.serve import ServeConfig, serve as run_server
        from moonsearch.serve.config import read_token
    except ImportError as exc:
        raise MoonsearchError(f"serve needs the serve extra: pip install -e '.[serve]' ({exc.name} is missing)") from None

    config = ServeConfig(index=index_path or default_index(), host=host, port=port, device=device,
                         write_token=read_token(token_file), cors_origins=list(cors_origin),
                         max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_image_pixels=max_image_pixels,
                         request_timeout_s=timeout, workers=workers)
    console.print(f"loading {config.index} ... then listening on http://{host}:{port}/ "
                  f"(writes {'on' if config.write_token else 'off'}"
                  f"{f', {workers} workers' if workers > 1 else ''})")
    run_server(config)


def main() -> None:
    try:
        app()
    except MoonsearchError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)   # one line
        raise SystemExit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise SystemExit(130)


if __name__ == "__main__":
    main()
