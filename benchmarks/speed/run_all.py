"""Run every speed benchmark and write benchmarks/results/speed.md.

    python benchmarks/speed/run_all.py [--index indexes/myntra] [--quick]

Runs indexing_throughput.py, faiss_scale.py and (given --index) query_latency.py one after the
other, never two at once (on 2 cores a second job would only slow the first), each in its own
process so one's memory is freed before the next. Each script's table goes into one markdown file
below one machine block, with the exact command that produced it, so a reader can rerun any part.
`--quick` runs everything at tiny scale, as a smoke test; its file is speed-quick.md, so it never
overwrites the real results.

With --index, the run also writes benchmarks/results/latency.json (latency-quick.json with
--quick), the issue-17 targets in one file: {"commit", "load_average", "cold_query_s", "p50_ms",
"p95_ms", "indexing": {"products_per_s", "torch_products_per_s", "speedup", "bare_ratio"},
"peers": {...}}, from the JSON each script writes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import default_data, machine_block, repo_root  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_CASES = ("hybrid_text", "vectors_text", "image", "filtered_hybrid")
RESULTS = repo_root() / "benchmarks" / "results"


def rel(path: Path) -> str:
    """Paths in recorded commands relative to the repo root, where they are meant to be run."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "unknown"
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min), {fifteen:.2f} (15 min)"


def plan(args, raw: Path) -> list[tuple[str, list[str], bool]]:
    """(title, argv after `python`, output is markdown) for each benchmark to run; the scripts
    that feed latency.json write their numbers as JSON into `raw`."""
    data = [] if args.data is None else ["--data", rel(args.data)]
    steps = []
    indexing = [rel(HERE / "indexing_throughput.py"), *data, "--no-machine", "--json", str(raw / "indexing.json")]
    indexing += ["--quick"] if args.quick else ["--products", str(args.products), "--rounds", str(args.rounds)]
    if args.threads:
        indexing += ["--threads", str(args.threads)]
    if args.vitb32:
        indexing += ["--parts", "pipeline,serial,torch,bare,vitb32"]
    if "indexing" in args.steps:
        steps.append(("Indexing throughput", indexing, True))
    if not args.no_faiss_scale and "faiss" in args.steps:
        faiss = [rel(HERE / "faiss_scale.py"), "--no-machine"]
        faiss += ["--quick"] if args.quick else ["--vectors", str(args.vectors), "--queries", str(args.queries)]
        if args.dim:
            faiss += ["--dim", str(args.dim)]
        steps.append(("FAISS at scale", faiss, True))
    if args.index is not None and "latency" in args.steps:
        latency = [rel(HERE / "query_latency.py"), "--index", rel(args.index), "--json", str(raw / "latency.json")]
        latency += ["--repeat", "3", "--cold-repeat", "1"] if args.quick else []
        steps.append(("Query latency", latency, False))
    if args.index is not None and "peers" in args.steps:
        peers = [rel(HERE / "peers.py"), "--index", rel(args.index), "--json", str(raw / "peers.json")]
        peers += ["--repeat", "2"] if args.quick else []
        steps.append(("Search parts beside embedded peers", peers, True))
    return steps


def latency_record(raw: Path) -> dict:
    """latency.json, shaped as issue 17's Targets ask, from the scripts' raw JSON."""
    def read(name):
        path = raw / name
        return json.loads(path.read_text()) if path.exists() else {}

    latency, indexing, peers = read("latency.json"), read("indexing.json"), read("peers.json")
    record = {
        "commit": git_revision(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cold_query_s": latency.get("cold_query_s"),
        "p50_ms": {k: latency.get("p50_ms", {}).get(k) for k in TARGET_CASES},
        "p95_ms": {k: latency.get("p95_ms", {}).get(k) for k in TARGET_CASES},
        "image_parts_p50_ms": latency.get("image_parts_p50_ms"),
        "indexing": {k: indexing.get("indexing", {}).get(k) for k in
                     ("products_per_s", "torch_products_per_s", "speedup", "bare_ratio")},
        "peers": {**peers.get("ratios", {}),
                  "top10_agreement": peers.get("peers", {}).get("lancedb", {}).get("top10_agreement"),
                  "lancedb_p50_ms": {c: v["p50_ms"] for c, v in
                                     peers.get("peers", {}).get("lancedb", {}).get("cases", {}).items()},
                  "moonsearch_p50_ms": {c: v["p50_ms"] for c, v in peers.get("moonsearch", {}).items()}},
    }
    return record


def run(title: str, argv: list[str]) -> tuple[int, str, float]:
    """Run one benchmark with the repo root as working directory; its stderr (progress) passes through."""
    print(f"\n== {title}: python {shlex.join(argv)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=repo_root(), stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    print(done.stdout, flush=True)
    return done.returncode, done.stdout, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help=f"Myntra catalog folder [{rel(default_data())}]")
    parser.add_argument("--index", type=Path, help="an index for query_latency.py (skipped without one)")
    parser.add_argument("--products", type=int, default=2000, help="indexing_throughput.py --products")
    parser.add_argument("--vectors", type=int, default=1_000_000, help="faiss_scale.py --vectors")
    parser.add_argument("--queries", type=int, default=1000, help="faiss_scale.py --queries")
    parser.add_argument("--dim", type=int, help="faiss_scale.py --dim [the default encoder's]")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every benchmark (torch and FAISS) "
                        "[one per core]; 1 is steadier while other jobs load the machine")
    parser.add_argument("--quick", action="store_true", help="tiny scale everywhere: a smoke run")
    parser.add_argument("--latency-out", type=Path, help="[latency.json beside --out; latency-quick.json with --quick]")
    parser.add_argument("--rounds", type=int, default=2, help="indexing_throughput.py --rounds [2]")
    parser.add_argument("--steps", default="indexing,faiss,latency,peers",
                        help="which steps to run [indexing,faiss,latency,peers]; with --raw, latency.json also "
                        "takes the JSON an earlier run left there for the steps not run now")
    parser.add_argument("--raw", type=Path, help="folder for the scripts' raw JSON [a new temp folder]")
    parser.add_argument("--no-faiss-scale", action="store_true", help="leave out faiss_scale.py (15-30 min at 1M)")
    parser.add_argument("--vitb32", action="store_true", help="also time the ViT-B-32 pipeline (7+ min)")
    parser.add_argument("--out", type=Path, help="[benchmarks/results/speed.md, or speed-quick.md with --quick]")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("speed-quick.md" if args.quick else "speed.md")
    if args.threads:
        # Before torch is imported (machine_block), so this process reports what the children use.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MOONSEARCH_THREADS"] = str(args.threads)   # moonsearch's own thread policy
    if args.index is not None and not args.index.exists():
        sys.exit(f"index not found: {args.index}")
    data = args.data or default_data()
    if not (data / "products.jsonl").is_file():
        sys.exit(f"Myntra catalog not found at {data} (needs products.jsonl and images/); pass --data")

    own = ["benchmarks/speed/run_all.py", *(a for a in (argv if argv is not None else sys.argv[1:]))]
    started = datetime.now(timezone.utc)
    machine = machine_block("Machine (at start)")
    print(machine)
    sections, failed = [], []
    args.steps = {p.strip() for p in args.steps.split(",") if p.strip()}
    raw = args.raw or Path(tempfile.mkdtemp(prefix="moonsearch-speed-"))
    raw.mkdir(parents=True, exist_ok=True)
    for title, step, is_markdown in plan(args, raw):
        code, stdout, seconds = run(title, step)
        body = stdout.strip() if is_markdown else f"```\n{stdout.rstrip()}\n```"
        if code != 0:
            failed.append(title)
            body += f"\n\n**Failed with exit code {code}** (its error went to the terminal)."
        env = f"OMP_NUM_THREADS={args.threads} MOONSEARCH_THREADS={args.threads} " if args.threads else ""
        sections.append(f"## {title}\n\n`{env}python {shlex.join(step)}` ({seconds:.0f} s wall)\n\n{body}\n")

    if args.index is None:
        sections.append("## Query latency\n\nSkipped: no `--index` was given.\n")
    header = [
        "# Speed benchmarks" + (" — QUICK smoke run, tiny scale: not benchmark numbers" if args.quick else ""),
        "",
        f"Run {started.isoformat(timespec='seconds')} at commit {git_revision()}, "
        f"written by `python {shlex.join(own)}`.",
        "",
        "Read the numbers as ratios within this run: everything ran on the same machine one after the "
        "other, and other jobs on the machine (see the load average) move all absolute numbers together.",
        "",
        f"Load average at the end: {load_average()}.",
        "",
        machine,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.index is not None:
        record = latency_record(raw)
        target = args.latency_out or out.with_name("latency-quick.json" if args.quick else "latency.json")
        target.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {rel(target)}", file=sys.stderr)
        sections.insert(0, "## Issue 17 targets (latency.json)\n\n```json\n" + json.dumps(record, indent=2)
                        + "\n```\n")
    out.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {rel(out)}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
