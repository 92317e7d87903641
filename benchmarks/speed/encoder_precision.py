"""Would int8 MiniLM make text queries faster without changing their results? (issue 17)

    python benchmarks/speed/encoder_precision.py --index indexes/myntra2 [--json out.json]

A text query's encoder time is mostly MiniLM reading its fp32 layer weights (42 MB, more than
this CPU's L3), so fewer bytes per weight is the obvious lever. This quantises the index's
cached MiniLM graph two ways with ONNX Runtime's own tools, swaps each into the query encoder
in turn, and reports per query (the 50 shopper queries of ../shared/data, or --queries FILE,
one per line): encoder p50 ms, cosine of the final query vector to fp32's (min and mean), and
top-10 agreement on the index's product vectors (identical lists, overlap). Ratios are within
one run. The 8-bit weight-only variant needs `onnx_ir` (pip install onnx_ir); without it that
row is skipped with its reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHOPPER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "queries" / "shopper_queries.jsonl"


def dynamic_int8(source: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])


def weight_only_int8(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8, accuracy_level=4)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), False)


VARIANTS = {"int8 dynamic (per-channel MatMul)": dynamic_int8, "8-bit weight-only (MatMulNBits, int8 compute)": weight_only_int8}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, help="one query per line [default: the shopper queries]")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    import moonsearch
    from moonsearch.encoder.onnx_moon import _session_options

    if args.queries:
        queries = [q.strip() for q in args.queries.read_text().splitlines() if q.strip()]
    elif SHOPPER.exists():
        queries = [json.loads(line)["query"] for line in SHOPPER.read_text().splitlines() if line.strip()]
    else:
        sys.exit(f"no queries: {SHOPPER} is absent; give --queries FILE")
    index = moonsearch.open_index(args.index, device="cpu")
    encoder = index.encoder
    if not hasattr(encoder, "session"):
        sys.exit("the index's encoder does not run on ONNX Runtime (MOONSEARCH_ONNX=0?)")
    source = encoder.paths["text"]
    encoder.session("text")
    products = index._view("mm")

    def measure() -> tuple[np.ndarray, float]:
        vectors = np.concatenate([encoder.encode_queries([q], [None]) for q in queries])
        times = []
        for _ in range(args.repeat):
            for q in queries:
                start = time.perf_counter()
                encoder.encode_queries([q], [None])
                times.append((time.perf_counter() - start) * 1000)
        return vectors, statistics.median(times)

    reference, reference_ms = measure()
    _, reference_top = products.search(reference, 10, None)
    rows = [{"variant": "fp32 (shipped)", "encoder_p50_ms": round(reference_ms, 2), "cosine_min": 1.0,
             "cosine_mean": 1.0, "top10_identical": 1.0, "top10_overlap": 1.0}]
    fp32_session = encoder._sessions["text"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in VARIANTS.items():
            out = Path(tmp) / "minilm-variant.onnx"
            try:
                make(source, out)
            except ImportError as exc:
                rows.append({"variant": name, "skipped": f"{exc.name or exc} is not installed"})
                continue
            encoder._sessions["text"] = ort.InferenceSession(str(out), _session_options(encoder.threads),
                                                             providers=["CPUExecutionProvider"])
            vectors, ms = measure()
            _, top = products.search(vectors, 10, None)
            cosine = (vectors * reference).sum(1)
            rows.append({"variant": name, "encoder_p50_ms": round(ms, 2), "cosine_min": round(float(cosine.min()), 5),
                         "cosine_mean": round(float(cosine.mean()), 5),
                         "top10_identical": round(float(np.mean([list(a) == list(b) for a, b in zip(top, reference_top)])), 3),
                         "top10_overlap": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, reference_top)])), 3)})
    encoder._sessions["text"] = fp32_session
    index.close()
    print(f"{len(queries)} queries, index {args.index}")
    print(f"{'variant':48} {'p50 ms':>7} {'cos min':>8} {'cos mean':>8} {'top10 same':>10} {'overlap':>8}")
    for row in rows:
        if "skipped" in row:
            print(f"{row['variant']:48} skipped: {row['skipped']}")
        else:
            print(f"{row['variant']:48} {row['encoder_p50_ms']:7.2f} {row['cosine_min']:8.5f} {row['cosine_mean']:8.5f} "
                  f"{row['top10_identical']:10.3f} {row['top10_overlap']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"index": str(args.index), "queries": len(queries), "variants": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
