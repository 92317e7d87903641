"""An explanation in the terminal: the product text shaded by weight, top words with bars, and
the image grid as numbers (the PNG holds the picture)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from moonsearch.explain.explainer import Explanation

BAR_WIDTH = 24


def _bar(fraction: float) -> str:
    """A bar of `fraction` of the width, in eighth blocks."""
    eighths = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH * 8)
    return "█" * (eighths // 8) + ("▏▎▍▌▋▊▉"[eighths % 8 - 1] if eighths % 8 else "")


def shaded_text(explanation: Explanation) -> Text:
    """The product's words on a background as warm as their weight, from the lowest word's
    (white) to the highest's."""
    weights = [w.weight for w in explanation.words] or [0.0]
    low, spread = min(weights), (max(weights) - min(weights)) or 1.0
    text = Text()
    for i, word in enumerate(explanation.words):
        level = (word.weight - low) / spread
        style = f"black on rgb(255,{int(255 - 155 * level)},{int(255 - 235 * level)})" if level > 0.05 else ""
        text.append(("" if i == 0 else " ") + word.text, style=style)
    return text


METHOD_LINES = {
    "occlusion": "occlusion: weight = share of the score lost when a word (its pieces) or an image patch "
                 "is left out; [CLS]/[SEP] are kept",
    "decomposition": "decomposition: weight = share of the positive additive score terms (exact; flat "
                     "after fusion)",
}


def render(explanation: Explanation, top: int = 15) -> Group:
    e = explanation
    occlusion = e.method == "occlusion"
    query = " + ".join(x for x in (repr(e.query_text) if e.query_text else None,
                                   f"image {e.query_image}" if e.query_image else None) if x)
    shares = e.shares()
    labels = {"text": "text", "image": "image", "special": "/".join(dict.fromkeys(s["piece"] for s in e.specials)) or "special"}
    if occlusion:
        done = (f"   ({e.check['occluded_words']} words + {e.check['occluded_patches']} patches left out "
                f"one at a time)")
    else:
        done = f"   (sum of terms {e.check['terms_sum']:.4f}, {len(e.kinds)} tokens)"
    header = Text.assemble(
        ("score ", "bold"), f"{e.score:.4f}", f"  {query} vs product {e.product.id} ({e.encoder_id})\n",
        ("method ", "bold"), METHOD_LINES.get(e.method, e.method), "\n",
        "weight by part: ", "  ".join(f"{labels.get(k, k)} {v:.0%}" for k, v in shares.items()), done)
    value = "drop" if occlusion else "term"
    words = Table(title=f"top {min(top, len(e.words))} of {len(e.words)} words", title_justify="left")
    for column, justify in (("word", "left"), ("weight", "right"), (value, "right"), ("", "left")):
        words.add_column(column, justify=justify)
    best = e.top_words(top)
    peak = best[0].weight if best and best[0].weight > 0 else 1.0
    for word in best:
        words.add_row(word.text, f"{word.weight:.3f}", f"{(word.drop if occlusion else word.term):+.4f}",
                      _bar(word.weight / peak))
    parts = [header]
    if e.parts:
        parts.append(Text("left out whole: " + "   ".join(
            f"{name} -> score {v['score_without']:.4f} (drop {v['drop']:+.4f})" for name, v in e.parts.items())))
    if e.note:
        parts.append(Text(e.note, style="yellow"))
    parts += [Text("product text: ", style="bold") + shaded_text(e), words]
    if e.image_weights is not None:
        values, what, fmt = ((e.image_drops, "drops (heatmap)", "{:+.4f}") if e.image_drops is not None
                             else (e.image_weights, "weights", "{:.3f}"))
        rows, cols = values.shape
        grid = Table(title=f"image {rows}x{cols} patch {what}", title_justify="left", show_header=False)
        for _ in range(cols):
            grid.add_column(justify="right")
        for row in values:
            grid.add_row(*(fmt.format(v) for v in row))
        parts.append(grid)
    return Group(*parts)
