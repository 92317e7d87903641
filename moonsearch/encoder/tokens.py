"""What an explainable encoder exposes: a product's last-layer token states, with what each is.

Encoders whose embedding is the (normalised) mean of their last-layer token states can be
explained exactly: the cosine score of a query q against the product splits into one additive
term per product token, q . h_i / (T * ||mean_j h_j||). `moonsearch explain` turns those terms
into text-token weights and an image-patch heatmap (`--method decomposition`).

The default method, occlusion, also needs `score_with_masks(query, text, image, masks)`: the
query's score against the product for each (T,) bool row of `masks` over the product_tokens()
order, False leaving a token out of the fusion model's attention and mean (moon-lite has it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TokenBreakdown:
    """One product's tokens as the encoder pooled them.

    states:       (T, D) float32 last-layer states; the product embedding is normalise(mean(states)).
    kinds:        T strings, "text" or "image" (other strings allowed, e.g. "special").
    text_pieces:  for every "text" token, in order, the piece of text it stands for.
    image_grid:   (rows, cols) of the "image" tokens in row-major order, or None without an image.
    special_pieces:  optional labels ("[CLS]", "[SEP]") of the tokens that are neither text nor
                  image, in order; they count in the score, so they are reported, not dropped.
    image_letterbox: optional (width, height) the image was letterboxed to on white before the
                  grid was computed (towers.letterbox), so the heatmap can drop the padding;
                  None means the grid spans the image as given.
    """

    states: np.ndarray
    kinds: list[str]
    text_pieces: list[str]
    image_grid: tuple[int, int] | None
    special_pieces: list[str] = field(default_factory=list)
    image_letterbox: tuple[int, int] | None = None
