"""Generate the moonsearch SAMPLE catalog: synthetic products and drawn images.

Everything here is invented: brand names, titles, prices and attributes are
picked by a seeded random generator, and every image is drawn by the functions
below with Pillow (no photographs, no data from any real catalog).

    python catalog/make_sample.py

rewrites catalog/products.jsonl and catalog/images/*.jpg.  The output is the
same on every run (fixed seed, fixed iteration order).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 20240611
N_PER_TYPE = 10          # 12 article types -> 120 products
N_WITHOUT_IMAGE = 3      # real catalogs have products without a photo
W, H = 120, 160          # final image size (portrait 3:4)
SS = 4                   # supersampling factor used while drawing
JPEG_QUALITY = 80

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
PRODUCTS = HERE / "products.jsonl"

# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

COLOURS = {
    "Red": (200, 32, 42),
    "Blue": (42, 96, 204),
    "Black": (34, 34, 38),
    "White": (250, 250, 247),
    "Green": (38, 140, 72),
    "Yellow": (242, 204, 44),
    "Pink": (240, 140, 172),
    "Navy Blue": (28, 38, 92),
    "Grey": (132, 133, 138),
    "Brown": (122, 76, 44),
    "Beige": (222, 202, 166),
    "Maroon": (112, 22, 42),
    "Olive": (108, 114, 48),
    "Purple": (112, 60, 152),
    "Orange": (242, 122, 34),
    "Silver": (192, 194, 200),
    "Gold": (212, 172, 60),
}

# Invented brand names, each with the master categories it sells.
BRANDS = {
    "Northwind": ["Apparel", "Accessories"],
    "Indigo Kite": ["Apparel"],
    "Tallowmere": ["Apparel", "Footwear"],
    "Ferncastle": ["Apparel"],
    "Lumora": ["Apparel", "Accessories"],
    "Quillon": ["Accessories"],
    "Pebblecourt": ["Apparel", "Footwear"],
    "Saffron Lane": ["Apparel", "Footwear", "Accessories"],
    "Vantaro": ["Footwear"],
    "Ashgrove": ["Apparel", "Accessories"],
    "Mistral Row": ["Footwear", "Accessories"],
    "Copperleaf": ["Accessories"],
}

USAGE_PHRASE = {
    "Casual": "everyday casual wear",
    "Formal": "the office and formal occasions",
    "Smart Casual": "smart casual days",
    "Sports": "sport and training",
    "Party": "parties and evenings out",
    "Travel": "travel and weekends away",
}

GENDER_PHRASE = {"Men": "men", "Women": "women", "Unisex": "men and women"}

# articleType -> masterCategory, subCategory, gender weights, colour weights,
# usage weights, price range (INR).
TYPES = {
    "Tshirts": dict(
        master="Apparel", sub="Topwear",
        gender={"Men": 5, "Women": 3, "Unisex": 2},
        colours={"Black": 3, "White": 3, "Navy Blue": 3, "Grey": 2, "Red": 2, "Blue": 2, "Green": 2,
                 "Yellow": 1, "Olive": 1, "Maroon": 1, "Pink": 1, "Purple": 1, "Orange": 1},
        usage={"Casual": 6, "Sports": 3}, price=(299, 1499)),
    "Shirts": dict(
        master="Apparel", sub="Topwear",
        gender={"Men": 7, "Women": 3},
        colours={"White": 4, "Blue": 3, "Navy Blue": 2, "Black": 2, "Grey": 1, "Pink": 1, "Green": 1,
                 "Maroon": 1, "Beige": 1, "Olive": 1},
        usage={"Casual": 4, "Formal": 4, "Smart Casual": 2}, price=(599, 2499)),
    "Dresses": dict(
        master="Apparel", sub="Dress",
        gender={"Women": 1},
        colours={"Red": 3, "Pink": 2, "Black": 3, "Blue": 2, "Navy Blue": 2, "Yellow": 2, "Green": 2,
                 "Maroon": 1, "Purple": 1, "White": 1},
        usage={"Casual": 4, "Party": 3}, price=(799, 3499)),
    "Jeans": dict(
        master="Apparel", sub="Bottomwear",
        gender={"Men": 6, "Women": 4},
        colours={"Blue": 6, "Navy Blue": 3, "Black": 3, "Grey": 2},
        usage={"Casual": 1}, price=(999, 3299)),
    "Trousers": dict(
        master="Apparel", sub="Bottomwear",
        gender={"Men": 6, "Women": 4},
        colours={"Black": 3, "Navy Blue": 3, "Grey": 3, "Beige": 2, "Brown": 1, "Olive": 2},
        usage={"Formal": 4, "Casual": 3, "Smart Casual": 2}, price=(799, 2799)),
    "Skirts": dict(
        master="Apparel", sub="Bottomwear",
        gender={"Women": 1},
        colours={"Black": 3, "Red": 2, "Pink": 2, "Navy Blue": 2, "Yellow": 1, "Green": 1, "Beige": 1,
                 "Maroon": 1, "White": 1},
        usage={"Casual": 4, "Party": 2, "Formal": 1}, price=(499, 1999)),
    "Casual Shoes": dict(
        master="Footwear", sub="Shoes",
        gender={"Men": 5, "Women": 3, "Unisex": 2},
        colours={"White": 4, "Black": 3, "Navy Blue": 2, "Grey": 2, "Blue": 1, "Red": 1, "Brown": 2,
                 "Green": 1},
        usage={"Casual": 5, "Sports": 1}, price=(999, 4999)),
    "Heels": dict(
        master="Footwear", sub="Shoes",
        gender={"Women": 1},
        colours={"Black": 3, "Red": 2, "Pink": 2, "Beige": 2, "Gold": 1, "Silver": 1, "Maroon": 1,
                 "Blue": 1},
        usage={"Party": 4, "Formal": 2, "Casual": 1}, price=(899, 3999)),
    "Handbags": dict(
        master="Accessories", sub="Bags",
        gender={"Women": 1},
        colours={"Black": 3, "Brown": 3, "Beige": 2, "Maroon": 2, "Red": 1, "Pink": 1, "Navy Blue": 1,
                 "Green": 1},
        usage={"Casual": 4, "Formal": 2, "Party": 1}, price=(699, 4499)),
    "Caps": dict(
        master="Accessories", sub="Headwear",
        gender={"Unisex": 6, "Men": 3, "Women": 1},
        colours={"Black": 3, "Navy Blue": 2, "Red": 2, "White": 2, "Blue": 1, "Grey": 1, "Olive": 1,
                 "Green": 1, "Yellow": 1},
        usage={"Casual": 4, "Sports": 3, "Travel": 1}, price=(199, 899)),
    "Watches": dict(
        master="Accessories", sub="Watches",
        gender={"Men": 5, "Women": 4, "Unisex": 1},
        colours={"Black": 3, "Brown": 3, "Silver": 3, "Gold": 2, "Blue": 1, "White": 1},
        usage={"Casual": 4, "Formal": 3, "Sports": 1}, price=(999, 9999)),
    "Sunglasses": dict(
        master="Accessories", sub="Eyewear",
        gender={"Unisex": 5, "Men": 3, "Women": 2},
        colours={"Black": 4, "Brown": 2, "Gold": 2, "Silver": 1, "Blue": 1, "Red": 1},
        usage={"Casual": 4, "Travel": 2, "Sports": 1}, price=(399, 2999)),
}


def pick(rng: random.Random, weights: dict) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys], k=1)[0]


def price_in(rng: random.Random, lo: int, hi: int) -> int:
    """A shop-like price ending in 49 or 99."""
    return min(hi, (rng.randrange(lo, hi + 1) // 50) * 50 + 49)


# --------------------------------------------------------------------------
# Product records
# --------------------------------------------------------------------------

def make_fields(rng: random.Random, atype: str, colour_use: dict) -> dict:
    """Everything except id/image: gender, colour, attributes, title, description.

    Colours already used often are damped so that the small sample still covers
    the whole palette instead of being mostly black and navy.
    """
    spec = TYPES[atype]
    gender = pick(rng, spec["gender"])
    colour = pick(rng, {k: w / (1 + colour_use.get(k, 0)) ** 1.5 for k, w in spec["colours"].items()})
    usage = pick(rng, spec["usage"])
    brand = rng.choice([b for b, cats in BRANDS.items() if spec["master"] in cats])
    c = colour.lower()
    g = GENDER_PHRASE[gender]
    use = USAGE_PHRASE[usage]
    a: dict = {}

    if atype == "Tshirts":
        a["Pattern"] = pick(rng, {"Solid": 4, "Striped": 3, "Printed": 3})
        a["Sleeve Length"] = pick(rng, {"Short Sleeves": 4, "Long Sleeves": 1})
        a["Neck"] = pick(rng, {"Round Neck": 5, "Polo Collar": 2, "V-Neck": 2})
        a["Fabric"] = pick(rng, {"Cotton": 5, "Polyester": 2, "Cotton Blend": 2})
        if usage == "Sports":
            a["Fabric"] = "Polyester"
        polo = " Polo" if a["Neck"] == "Polo Collar" else ""
        title = f"{brand} {gender} {colour} {a['Pattern']} {a['Fabric']}{polo} Tshirts"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Fabric'].lower()} t-shirt for {g} with "
                f"{a['Sleeve Length'].lower()} and a {a['Neck'].lower()}, made for {use}.")
    elif atype == "Shirts":
        a["Pattern"] = pick(rng, {"Solid": 4, "Striped": 3, "Checked": 3, "Printed": 1})
        a["Sleeve Length"] = pick(rng, {"Long Sleeves": 4, "Short Sleeves": 1})
        a["Collar"] = pick(rng, {"Spread Collar": 3, "Button-Down Collar": 2, "Cutaway Collar": 1})
        a["Fabric"] = pick(rng, {"Cotton": 5, "Linen": 2, "Cotton Blend": 2})
        a["Fit"] = pick(rng, {"Slim Fit": 3, "Regular Fit": 3})
        kind = "Formal" if usage == "Formal" else "Casual"
        title = f"{brand} {gender} {colour} {a['Pattern']} {a['Fit']} {a['Fabric']} {kind} Shirts"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Fabric'].lower()} shirt for {g} in a "
                f"{a['Fit'].lower()} with a {a['Collar'].lower()} and {a['Sleeve Length'].lower()}, "
                f"made for {use}.")
    elif atype == "Dresses":
        a["Pattern"] = pick(rng, {"Solid": 3, "Printed": 4, "Striped": 1, "Checked": 1})
        a["Sleeve Length"] = pick(rng, {"Sleeveless": 3, "Short Sleeves": 2})
        a["Length"] = pick(rng, {"Mini": 2, "Midi": 3, "Maxi": 2})
        a["Shape"] = "Fit and Flare"
        a["Fabric"] = pick(rng, {"Cotton": 3, "Viscose Rayon": 2, "Georgette": 2, "Crepe": 1})
        title = f"{brand} Women {colour} {a['Pattern']} {a['Fabric']} {a['Length']} Dresses"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Length'].lower()} fit and flare dress in "
                f"{a['Fabric'].lower()}, {a['Sleeve Length'].lower()}, made for {use}.")
    elif atype == "Jeans":
        a["Pattern"] = "Solid"
        a["Fit"] = pick(rng, {"Slim Fit": 4, "Regular Fit": 3, "Skinny Fit": 2})
        a["Rise"] = pick(rng, {"Mid-Rise": 4, "High-Rise": 2, "Low-Rise": 1})
        a["Fabric"] = pick(rng, {"Denim": 3, "Stretch Denim": 2})
        a["Wash"] = pick(rng, {"Light Fade": 2, "Clean Look": 3, "Heavy Fade": 1})
        title = f"{brand} {gender} {colour} {a['Fit']} {a['Rise']} {a['Wash']} Jeans"
        desc = (f"{c.capitalize()} {a['Fit'].lower()} {a['Rise'].lower()} jeans for {g} in "
                f"{a['Fabric'].lower()} with a {a['Wash'].lower()}, made for {use}.")
    elif atype == "Trousers":
        a["Pattern"] = pick(rng, {"Solid": 6, "Checked": 2, "Striped": 2})
        a["Fit"] = pick(rng, {"Slim Fit": 3, "Regular Fit": 3, "Wide Leg": 1})
        a["Fabric"] = pick(rng, {"Cotton": 3, "Linen": 1, "Polyester Viscose": 2, "Wool Blend": 1})
        kind = "Formal" if usage == "Formal" else ("Chino" if a["Fabric"] == "Cotton" else "Casual")
        title = f"{brand} {gender} {colour} {a['Pattern']} {a['Fit']} {a['Fabric']} {kind} Trousers"
        desc = (f"{a['Pattern'].capitalize()} {c} {a['Fit'].lower()} trousers for {g} in "
                f"{a['Fabric'].lower()}, made for {use}.")
    elif atype == "Skirts":
        a["Pattern"] = pick(rng, {"Solid": 3, "Printed": 3, "Checked": 2, "Striped": 1})
        a["Length"] = pick(rng, {"Mini": 2, "Knee Length": 3, "Midi": 2})
        a["Shape"] = pick(rng, {"A-Line": 3, "Pleated": 2})
        a["Fabric"] = pick(rng, {"Cotton": 3, "Polyester": 2, "Viscose Rayon": 1})
        title = f"{brand} Women {colour} {a['Pattern']} {a['Shape']} {a['Length']} Skirts"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Shape'].lower().replace('a-line', 'A-line')} skirt, {a['Length'].lower()}, "
                f"in {a['Fabric'].lower()}, made for {use}.")
    elif atype == "Casual Shoes":
        a["Pattern"] = pick(rng, {"Solid": 3, "Striped": 2})
        a["Material"] = pick(rng, {"Canvas": 3, "Leather": 2, "Synthetic": 2, "Mesh": 1})
        a["Fastening"] = pick(rng, {"Lace-Ups": 4, "Slip-On": 1})
        a["Toe Shape"] = "Round Toe"
        sneaker = "Sneakers " if a["Fastening"] == "Lace-Ups" and rng.random() < 0.5 else ""
        stripes = "Striped " if a["Pattern"] == "Striped" else ""
        title = f"{brand} {gender} {colour} {stripes}{a['Material']} {a['Fastening']} {sneaker}Casual Shoes"
        title = title.replace("  ", " ")
        side = " with contrast side stripes" if a["Pattern"] == "Striped" else ""
        desc = (f"{c.capitalize()} {a['Material'].lower()} {a['Fastening'].lower().rstrip('s')} casual shoes "
                f"for {g}{side}, made for {use}.")
    elif atype == "Heels":
        a["Pattern"] = "Solid"
        a["Heel Type"] = pick(rng, {"Stiletto": 3, "Block": 2})
        a["Heel Height"] = pick(rng, {"Medium": 2, "High": 3})
        a["Material"] = pick(rng, {"Synthetic": 3, "Patent Leather": 1, "Suede": 1})
        a["Toe Shape"] = pick(rng, {"Pointed Toe": 3, "Round Toe": 1})
        title = f"{brand} Women {colour} {a['Material']} {a['Heel Type']} Heels"
        desc = (f"{c.capitalize()} {a['Material'].lower()} pumps with a {a['Heel Height'].lower()} "
                f"{a['Heel Type'].lower()} heel and a {a['Toe Shape'].lower()}, made for {use}.")
    elif atype == "Handbags":
        a["Pattern"] = pick(rng, {"Solid": 5, "Checked": 2, "Printed": 2})
        a["Material"] = pick(rng, {"PU": 3, "Leather": 2, "Canvas": 1})
        a["Type"] = pick(rng, {"Tote Bag": 2, "Satchel": 2, "Handheld Bag": 1})
        a["Closure"] = "Magnetic Snap" if a["Type"] == "Satchel" else "Zip"
        title = f"{brand} Women {colour} {a['Pattern']} {a['Material']} {a['Type']} Handbags"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Material'] if a['Material'] == 'PU' else a['Material'].lower()} "
                f"{a['Type'].lower()} with a top handle and {a['Closure'].lower()} closure, made for {use}.")
    elif atype == "Caps":
        a["Pattern"] = pick(rng, {"Solid": 5, "Striped": 2, "Printed": 2})
        a["Type"] = "Baseball Cap"
        a["Fabric"] = pick(rng, {"Cotton": 3, "Polyester": 2})
        a["Closure"] = pick(rng, {"Adjustable Strap": 3, "Snapback": 1})
        title = f"{brand} {gender} {colour} {a['Pattern']} {a['Fabric']} Baseball Caps"
        desc = (f"A {a['Pattern'].lower()} {c} {a['Fabric'].lower()} baseball cap for {g} with a curved "
                f"brim and {a['Closure'].lower()}, made for {use}.")
    elif atype == "Watches":
        if colour in ("Silver", "Gold"):
            a["Strap Material"] = "Stainless Steel"
            a["Case Colour"] = colour
        else:
            a["Strap Material"] = pick(rng, {"Leather": 3, "Silicone": 1}) if colour not in ("Blue", "White") \
                else "Silicone"
            a["Case Colour"] = pick(rng, {"Silver": 3, "Gold": 2, "Black": 1})
        a["Dial Colour"] = pick(rng, {"White": 3, "Black": 2, "Blue": 1})
        a["Dial Shape"] = "Round"
        a["Display"] = "Analogue"
        title = f"{brand} {gender} {colour} {a['Dial Colour']} Dial {a['Strap Material']} Strap Analogue Watches"
        desc = (f"An analogue watch for {g} with a round {a['Dial Colour'].lower()} dial, "
                f"{a['Case Colour'].lower()} case and {c} {a['Strap Material'].lower()} strap, "
                f"made for {use}.")
    elif atype == "Sunglasses":
        a["Frame Shape"] = pick(rng, {"Wayfarer": 3, "Round": 2, "Aviator": 2, "Rectangle": 2})
        a["Frame Material"] = "Metal" if colour in ("Gold", "Silver") or a["Frame Shape"] == "Aviator" \
            else pick(rng, {"Plastic": 3, "Metal": 1})
        a["Lens Colour"] = pick(rng, {"Black": 3, "Brown": 2, "Green": 1, "Blue": 1})
        a["Protection"] = "UV400"
        title = f"{brand} {gender} {colour} {a['Frame Shape']} Sunglasses"
        desc = (f"{a['Frame Shape']} sunglasses for {g} with a {c} {a['Frame Material'].lower()} frame "
                f"and {a['Lens Colour'].lower()} UV400 lenses, made for {use}.")
    else:  # pragma: no cover
        raise ValueError(atype)

    lo, hi = spec["price"]
    return dict(
        title=title,
        brand=brand,
        gender=gender,
        masterCategory=spec["master"],
        subCategory=spec["sub"],
        articleType=atype,
        baseColour=colour,
        price=price_in(rng, lo, hi),
        usage=usage,
        attributes=a,
        description=desc,
    )


def make_products(rng: random.Random) -> list[dict]:
    order = [t for t in TYPES for _ in range(N_PER_TYPE)]
    rng.shuffle(order)
    seen: set[str] = set()
    colour_use: dict[str, int] = {}
    products = []
    for i, atype in enumerate(order, start=1):
        while True:
            fields = make_fields(rng, atype, colour_use)
            if fields["title"] not in seen:
                break
        seen.add(fields["title"])
        colour_use[fields["baseColour"]] = colour_use.get(fields["baseColour"], 0) + 1
        pid = f"S{i:04d}"
        products.append({"id": pid, **fields, "image": f"images/{pid}.jpg"})
    for atype in rng.sample(sorted(TYPES), N_WITHOUT_IMAGE):     # photo-less, of different types
        rng.choice([p for p in products if p["articleType"] == atype])["image"] = None
    return products


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------

def clamp(v: float) -> int:
    return max(0, min(255, int(round(v))))


def shade(rgb, f: float):
    """f < 1 darkens, f > 1 lightens (towards white)."""
    if f <= 1:
        return tuple(clamp(c * f) for c in rgb)
    t = f - 1
    return tuple(clamp(c + (255 - c) * t) for c in rgb)


def luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def arc(cx, cy, rx, ry, a0, a1, n=16):
    """Points on an ellipse from angle a0 to a1 (degrees, y pointing down)."""
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * k / n)),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * k / n))) for k in range(n + 1)]


class Sketch:
    """A supersampled canvas with a per-product placement (scale + offset)."""

    def __init__(self, rng: random.Random, bg):
        self.img = Image.new("RGB", (W * SS, H * SS), bg)
        self.draw = ImageDraw.Draw(self.img)
        self.s = rng.uniform(0.84, 1.0)
        self.dx = rng.uniform(-5, 5)
        self.dy = rng.uniform(-5, 5)

    # coordinates are given in final-image pixels around a 120x160 layout
    def P(self, x, y):
        return ((60 + (x - 60) * self.s + self.dx) * SS, (80 + (y - 80) * self.s + self.dy) * SS)

    def pts(self, seq):
        return [self.P(x, y) for x, y in seq]

    def L(self, v):
        return max(1, int(round(v * self.s * SS)))

    def box(self, x0, y0, x1, y1):
        (a, b), (c, d) = self.P(x0, y0), self.P(x1, y1)
        return [a, b, c, d]

    # masks -------------------------------------------------------------
    def new_mask(self):
        return Image.new("L", self.img.size, 0)

    def poly_mask(self, seq):
        m = self.new_mask()
        ImageDraw.Draw(m).polygon(self.pts(seq), fill=255)
        return m

    def ellipse_mask(self, x0, y0, x1, y1):
        m = self.new_mask()
        ImageDraw.Draw(m).ellipse(self.box(x0, y0, x1, y1), fill=255)
        return m

    def rrect_mask(self, x0, y0, x1, y1, r):
        m = self.new_mask()
        ImageDraw.Draw(m).rounded_rectangle(self.box(x0, y0, x1, y1), radius=self.L(r), fill=255)
        return m

    # painting ----------------------------------------------------------
    def paint(self, mask, fill, outline=None, ow=1.0):
        """Fill `mask` with a colour or a full-canvas pattern image, with an outline ring."""
        if outline is not None:
            k = 2 * max(1, int(round(ow * SS * self.s))) + 1
            ring = mask.filter(ImageFilter.MaxFilter(k))
            self.img.paste(outline, (0, 0, *self.img.size), ring)
        if isinstance(fill, Image.Image):
            self.img.paste(fill, (0, 0), mask)
        else:
            self.img.paste(fill, (0, 0, *self.img.size), mask)

    def line(self, seq, col, w=1.0):
        self.draw.line(self.pts(seq), fill=col, width=self.L(w), joint="curve")

    def dot(self, x, y, r, col, outline=None):
        self.draw.ellipse(self.box(x - r, y - r, x + r, y + r), fill=col, outline=outline,
                          width=self.L(0.5) if outline else 0)

    def finish(self) -> Image.Image:
        return self.img.resize((W, H), Image.LANCZOS)


def contrast_colour(rgb, rng):
    """A neutral second colour for stripes, checks and prints (the base colour stays dominant)."""
    if luminance(rgb) > 150:
        return rng.choice([(28, 38, 92), (34, 34, 38), (70, 70, 76)])
    return rng.choice([(250, 250, 246), (232, 232, 230)])


def pattern_image(sk: Sketch, base, pattern: str, rng: random.Random, vertical=False):
    """A full-canvas RGB image carrying the fabric pattern (in supersampled pixels)."""
    hh, ww = sk.img.size[1], sk.img.size[0]
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32) / (SS * sk.s)   # fabric units ~ final px
    base_a = np.array(base, np.float32)
    out = np.broadcast_to(base_a, (hh, ww, 3)).copy()
    second = np.array(contrast_colour(base, rng), np.float32)
    ph = rng.uniform(0, 20)
    if pattern == "Striped":
        period = rng.uniform(6.5, 10)
        width = period * rng.uniform(0.28, 0.4)
        coord = xx if vertical else yy
        band = ((coord + ph) % period) < width
        out[band] = second
    elif pattern == "Checked":
        period = rng.uniform(9, 13)
        width = period * 0.5
        hb = ((yy + ph) % period) < width
        vb = ((xx + ph) % period) < width
        mix = np.where(hb & vb, 0.75, np.where(hb | vb, 0.4, 0.0))[..., None]
        out = out * (1 - mix) + second * mix
        # thin dark over-check lines make it read as a check, not a grid of blobs
        thin = (((yy + ph) % period) < 0.6) | (((xx + ph) % period) < 0.6)
        out[thin] = out[thin] * 0.6
    elif pattern == "Printed":
        period = rng.uniform(7, 10)
        r = period * rng.uniform(0.17, 0.23)
        row = np.floor((yy + ph) / period)
        cx = ((xx + ph + (row % 2) * period / 2) % period) - period / 2
        cy = ((yy + ph) % period) - period / 2
        out[(cx * cx + cy * cy) < r * r] = second
    # gentle left-to-right light for some volume
    light = 1.05 - 0.10 * (xx * SS * sk.s / ww)
    out = out * light[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def outline_of(rgb):
    return shade(rgb, 0.45) if luminance(rgb) > 60 else (95, 95, 100)


def detail_of(rgb):
    """A colour for seams and folds on a garment of colour rgb."""
    return shade(rgb, 0.72) if luminance(rgb) > 60 else (70, 70, 76)


# ---- garments -------------------------------------------------------------

def draw_tshirt(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng)
    ol = outline_of(col)
    long_ = a["Sleeve Length"] == "Long Sleeves"
    left = [(50, 34), (37, 38)]
    if long_:
        left += [(24, 58), (16, 112), (27, 114), (34, 72), (38, 66)]
    else:
        left += [(17, 56), (27, 69), (38, 61)]
    left += [(38, 128)]
    right = [(120 - x, y) for x, y in reversed(left)]
    if a["Neck"] == "V-Neck":
        neck = [(70, 34), (60, 50), (50, 34)]
    else:
        neck = arc(60, 34, 10, 8 if a["Neck"] == "Round Neck" else 6, 0, 180)
    body = left + right + neck
    sk.paint(sk.poly_mask(body), fill, ol, 1.0)
    d = detail_of(col)
    if a["Neck"] == "Round Neck":
        sk.line(arc(60, 34, 10, 8, 0, 180), d, 2.2)
    elif a["Neck"] == "V-Neck":
        sk.line(neck, d, 2.0)
    else:  # polo: collar flaps + placket
        for sgn in (-1, 1):
            flap = [(60, 40), (60 + sgn * 10, 33), (60 + sgn * 13, 36), (60 + sgn * 6, 46)]
            sk.paint(sk.poly_mask(flap), shade(col, 1.1) if luminance(col) < 200 else col, ol, 0.8)
        sk.line([(60, 40), (60, 58)], ol, 0.8)
        sk.dot(60, 47, 1.3, (235, 235, 230), ol)
        sk.dot(60, 54, 1.3, (235, 235, 230), ol)
    # sleeve hems
    if long_:
        sk.line([(17, 106), (28, 108)], d, 1.0)
        sk.line([(103, 106), (92, 108)], d, 1.0)
    else:
        sk.line([(20, 60), (29, 67)], d, 1.0)
        sk.line([(100, 60), (91, 67)], d, 1.0)
    sk.line([(39, 123), (81, 123)], d, 0.8)


def draw_shirt(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng, vertical=True)
    ol = outline_of(col)
    long_ = a["Sleeve Length"] == "Long Sleeves"
    left = [(51, 31), (37, 36)]
    if long_:
        left += [(25, 56), (17, 114), (29, 116), (35, 72), (38, 64)]
    else:
        left += [(18, 56), (27, 69), (38, 61)]
    left += [(37, 126)] + arc(48, 126, 11, 6, 180, 90, 6)[1:]   # curved shirt-tail hem
    right = [(120 - x, y) for x, y in reversed(left)]
    body = left + right
    # drop the duplicate centre point of the two hem arcs
    sk.paint(sk.poly_mask(body), fill, ol, 1.0)
    # inside of the collar stand
    sk.paint(sk.poly_mask([(51, 31), (69, 31), (60, 41)]), shade(col, 0.6), None)
    # collar flaps
    spread = {"Spread Collar": 14, "Button-Down Collar": 11, "Cutaway Collar": 16}[a["Collar"]]
    for sgn in (-1, 1):
        flap = [(60, 41), (60 + sgn * 9, 29), (60 + sgn * spread, 35), (60 + sgn * 7, 49)]
        sk.paint(sk.poly_mask(flap), fill, ol, 0.8)
        if a["Collar"] == "Button-Down Collar":
            sk.dot(60 + sgn * 8, 45, 1.0, (230, 230, 225), ol)
    # placket and buttons
    sk.line([(57.5, 44), (57.5, 131)], ol, 0.6)
    sk.line([(62.5, 44), (62.5, 131)], ol, 0.6)
    btn = (240, 240, 235) if luminance(col) < 200 else (150, 150, 150)
    for y in range(52, 130, 13):
        sk.dot(60, y, 1.5, btn, ol)
    # chest pocket
    sk.line([(42, 56), (42, 68), (51, 68), (51, 56), (42, 56)], ol, 0.6)
    if long_:
        sk.line([(18, 106), (29, 108)], ol, 0.8)
        sk.line([(102, 106), (91, 108)], ol, 0.8)


def draw_dress(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng)
    ol = outline_of(col)
    hem = {"Mini": 112, "Midi": 132, "Maxi": 146}[a["Length"]]
    flare = {"Mini": 26, "Midi": 32, "Maxi": 34}[a["Length"]]
    if a["Sleeve Length"] == "Short Sleeves":
        for sgn in (-1, 1):
            sl = [(60 + sgn * 12, 28), (60 + sgn * 24, 38), (60 + sgn * 20, 47), (60 + sgn * 15, 43)]
            sk.paint(sk.poly_mask(sl), fill, ol, 0.9)
    left = [(53, 28), (47, 29), (45, 44), (49, 70)]
    right = [(120 - x, y) for x, y in reversed(left)]
    bodice = left + right + arc(60, 28, 7, 8, 0, 180)
    skirt = [(49, 69), (71, 69), (60 + flare, hem - 4)] + arc(60, hem - 4, flare, 5, 0, 180)
    sk.paint(sk.poly_mask(skirt), fill, ol, 1.0)
    sk.paint(sk.poly_mask(bodice), fill, ol, 1.0)
    # waist band
    sk.paint(sk.poly_mask([(48, 67), (72, 67), (72, 72), (48, 72)]), shade(col, 0.75), ol, 0.6)
    d = detail_of(col)
    for t in (-0.55, -0.2, 0.2, 0.55):          # skirt folds
        sk.line([(60 + t * 18, 74), (60 + t * flare * 1.6, hem - 6)], d, 0.7)


def draw_bottoms(sk, col, a, rng, jeans: bool):
    fill = pattern_image(sk, col, a["Pattern"], rng, vertical=True)
    ol = outline_of(col)
    fit = a.get("Fit", "Regular Fit")
    hw = {"Skinny Fit": 7, "Slim Fit": 9, "Regular Fit": 10.5, "Wide Leg": 14}[fit]   # half hem width
    legs = [(40, 34), (80, 34), (82, 84), (72 + hw, 140), (72 - hw + 2, 140), (60.5, 64),
            (59.5, 64), (48 + hw - 2, 140), (48 - hw, 140), (38, 84)]
    sk.paint(sk.poly_mask(legs), fill, ol, 1.0)
    band = [(40, 26), (80, 26), (80, 34), (40, 34)]
    sk.paint(sk.poly_mask(band), fill, ol, 0.8)
    if jeans:
        st = (222, 160, 70)   # contrast stitching
        if a.get("Wash") in ("Light Fade", "Heavy Fade"):
            # faded thighs: light patches
            fade = 1.35 if a["Wash"] == "Heavy Fade" else 1.18
            for cx in (48, 72):
                m = sk.ellipse_mask(cx - 6, 50, cx + 6, 92).filter(ImageFilter.GaussianBlur(SS * 3))
                sk.img.paste(shade(col, fade), (0, 0, *sk.img.size), m)
        sk.line([(41, 33), (79, 33)], st, 0.6)
        sk.line([(60, 35), (60, 52)] + arc(55, 52, 5, 6, 0, 90, 4), st, 0.6)     # fly
        sk.line(arc(40, 34, 10, 10, 0, 90, 6), st, 0.6)                          # front pockets
        sk.line(arc(80, 34, 10, 10, 180, 90, 6), st, 0.6)
        for x in (44, 53, 67, 76):                                               # belt loops
            sk.paint(sk.poly_mask([(x - 1, 25), (x + 1, 25), (x + 1, 35), (x - 1, 35)]),
                     shade(col, 0.85), ol, 0.4)
        sk.dot(60, 30, 1.6, (200, 170, 90), ol)
        sk.line([(48 - hw + 0.5, 136), (48 + hw - 2.5, 136)], st, 0.6)
        sk.line([(72 - hw + 2.5, 136), (72 + hw - 0.5, 136)], st, 0.6)
    else:
        d = detail_of(col)
        sk.line([(50, 35), (48, 139)], d, 0.8)                                    # creases
        sk.line([(70, 35), (72, 139)], d, 0.8)
        sk.line([(42, 35), (47, 48)], ol, 0.7)                                   # slant pockets
        sk.line([(78, 35), (73, 48)], ol, 0.7)
        sk.line([(60, 35), (60, 56)], ol, 0.7)
        sk.dot(60, 30, 1.5, shade(col, 0.6), ol)


def draw_skirt(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng)
    ol = outline_of(col)
    hem = {"Mini": 102, "Knee Length": 118, "Midi": 134}[a["Length"]]
    flare = {"Mini": 26, "Knee Length": 30, "Midi": 33}[a["Length"]]
    body = [(44, 46), (76, 46), (60 + flare, hem)] + arc(60, hem, flare, 5, 0, 180)
    sk.paint(sk.poly_mask(body), fill, ol, 1.0)
    band = [(44, 39), (76, 39), (76, 47), (44, 47)]
    sk.paint(sk.poly_mask(band), shade(col, 0.8), ol, 0.8)
    d = detail_of(col)
    n = 7 if a["Shape"] == "Pleated" else 3
    for k in range(n):
        t = (k + 1) / (n + 1) * 2 - 1
        sk.line([(60 + t * 15, 48), (60 + t * flare * 0.97, hem + 4 * math.sqrt(max(0, 1 - t * t)))],
                d, 0.9 if a["Shape"] == "Pleated" else 0.7)


# ---- footwear -------------------------------------------------------------

def draw_casual_shoe(sk, col, a, rng):
    ol = outline_of(col)
    sole_col = (236, 236, 232) if luminance(col) < 215 else (198, 198, 196)
    if a["Material"] == "Leather" and rng.random() < 0.5:
        sole_col = (150, 100, 60)
    upper = [(18, 108), (19, 88), (21, 78), (27, 73), (34, 73), (41, 77), (47, 78), (50, 68), (55, 63),
             (60, 66), (72, 78), (88, 86), (99, 91), (105, 98), (107, 108)]
    fill = pattern_image(sk, col, "Solid", rng)
    sk.paint(sk.poly_mask(upper), fill, ol, 1.0)
    sk.paint(sk.rrect_mask(15, 104, 109, 116, 5), sole_col, shade(sole_col, 0.55), 0.9)
    sk.line([(17, 110), (107, 110)], shade(sole_col, 0.75), 0.6)
    d = detail_of(col)
    sk.line([(22, 77), (24, 104)], d, 0.7)                           # heel counter seam
    sk.line([(27, 74), (34, 74), (41, 78), (47, 79)], (60, 60, 64), 1.4)   # collar padding
    sk.line(arc(107, 104, 18, 12, 180, 260, 6), d, 0.8)              # toe cap
    if a["Pattern"] == "Striped":
        sc = contrast_colour(col, rng)
        for off in (0, 6):
            sk.line([(40 + off, 101), (56 + off, 78)], sc, 2.2)
    if a["Fastening"] == "Lace-Ups":
        lace = (245, 245, 240) if luminance(col) < 200 else (90, 90, 95)
        for k in range(5):
            x = 56 + k * 5.2
            y = 67 + k * 4.2
            sk.line([(x - 2, y + 3.5), (x + 3, y - 1.5)], lace, 1.1)
    else:
        sk.paint(sk.poly_mask([(52, 70), (57, 66), (60, 76), (55, 80)]), (70, 70, 74), None)


def draw_heel(sk, col, a, rng):
    ol = outline_of(col)
    fill = pattern_image(sk, col, "Solid", rng)
    pointed = a["Toe Shape"] == "Pointed Toe"
    high = a["Heel Height"] == "High"
    drop = 0 if high else 10             # medium heels sit lower at the back
    toe = [(106, 118), (111, 121), (104, 122)] if pointed else [(104, 115), (107, 119), (104, 122)]
    upper = [(24, 60 + drop), (30, 62 + drop), (40, 71 + drop), (52, 85 + drop * 0.5), (64, 94),
             (76, 95), (88, 99), (98, 106)] + toe + [(76, 122), (64, 117), (52, 106 + drop * 0.4),
                                           (40, 92 + drop * 0.7), (30, 82 + drop), (24, 79 + drop)]
    sk.paint(sk.poly_mask(upper), fill, ol, 1.0)
    # inner lining visible through the opening
    sk.line([(25, 61 + drop), (30, 63 + drop), (40, 72 + drop), (52, 86 + drop * 0.5), (64, 96)],
            (200, 180, 160), 1.0)
    sole_top = 80 + drop
    if a["Heel Type"] == "Stiletto":
        heel = [(25, sole_top), (36, sole_top + 3), (33, 124), (30, 124)]
    else:
        heel = [(24, sole_top), (37, sole_top + 3), (36, 124), (27, 124)]
    sk.paint(sk.poly_mask(heel), shade(col, 0.8), ol, 0.9)
    sk.paint(sk.poly_mask([(26, 122), (34 if a["Heel Type"] == "Stiletto" else 37, 122),
                           (34 if a["Heel Type"] == "Stiletto" else 37, 125),
                           (26 if a["Heel Type"] == "Stiletto" else 26, 125)]), (40, 40, 40), None)
    sk.line([(30, 83 + drop), (40, 93 + drop * 0.7), (52, 107 + drop * 0.4), (64, 118), (76, 123),
             (104, 123)], (45, 45, 45), 1.0)          # outsole edge
    if a["Material"] == "Patent Leather":
        sk.line([(70, 102), (88, 108)], shade(col, 1.6), 1.2)


# ---- accessories ----------------------------------------------------------

def draw_handbag(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng)
    ol = outline_of(col)
    hcol = shade(col, 0.7) if luminance(col) > 60 else (60, 60, 64)
    metal = (214, 178, 84)
    # handle(s) behind the body
    if a["Type"] == "Tote Bag":
        for dx in (-3, 3):
            sk.line(arc(60 + dx, 74, 17, 34, 180, 360, 20), hcol, 2.6)
    else:
        sk.line(arc(60, 72, 16, 26, 180, 360, 20), ol, 4.2)
        sk.line(arc(60, 72, 16, 26, 180, 360, 20), hcol, 2.8)
    body = [(32, 70), (88, 70), (95, 124)] + arc(87, 124, 8, 8, 0, 90, 5) + arc(33, 124, 8, 8, 90, 180, 5) \
        + [(25, 124)]
    sk.paint(sk.poly_mask(body), fill, ol, 1.0)
    if a["Type"] == "Satchel":
        flap = [(32, 70), (88, 70), (90, 92), (60, 100), (30, 92)]
        sk.paint(sk.poly_mask(flap), fill, ol, 0.9)
        sk.paint(sk.rrect_mask(56, 93, 64, 102, 1.5), metal, shade(metal, 0.55), 0.5)
    else:
        sk.line([(34, 76), (86, 76)], ol, 0.8)                      # zip line
        sk.paint(sk.rrect_mask(76, 74, 80, 84, 1), metal, shade(metal, 0.55), 0.4)
    for x in (44, 76):
        sk.dot(x, 70, 2.2, metal, shade(metal, 0.55))


def draw_cap(sk, col, a, rng):
    fill = pattern_image(sk, col, a["Pattern"], rng)
    ol = outline_of(col)
    brim_col = shade(col, 0.85) if a["Pattern"] == "Solid" else col
    brim = [(66, 92), (84, 88), (100, 90), (112, 96), (110, 102), (96, 104), (80, 102), (64, 99)]
    sk.paint(sk.poly_mask(brim), brim_col, ol, 1.0)
    crown = arc(56, 98, 34, 38, 180, 360, 24)
    sk.paint(sk.poly_mask(crown), fill, ol, 1.0)
    d = detail_of(col)
    sk.line(arc(56, 98, 11, 38, 270, 360, 10), d, 0.8)              # panel seams
    sk.line(arc(56, 98, 22, 38, 180, 270, 10), d, 0.8)
    sk.line([(22, 98), (90, 98)], d, 1.2)                           # sweatband edge
    sk.dot(56, 60, 2.6, shade(col, 0.8), ol)                        # top button
    for x, y in ((66, 86), (74, 80)):                               # eyelets
        sk.dot(x, y, 1.0, shade(col, 0.5))
    if a["Pattern"] == "Solid":
        sk.paint(sk.ellipse_mask(41, 75, 52, 85), contrast_colour(col, rng), ol, 0.5)   # logo patch


def metal_rgb(name):
    return {"Silver": (196, 198, 204), "Gold": (214, 176, 66), "Black": (40, 40, 44)}[name]


def draw_watch(sk, col, a, rng):
    ol = outline_of(col)
    case = metal_rgb(a["Case Colour"])
    dial = {"White": (246, 246, 242), "Black": (28, 28, 30), "Blue": (30, 60, 140)}[a["Dial Colour"]]
    strap_top = [(51, 16), (69, 16), (71, 58), (49, 58)]
    strap_bot = [(49, 102), (71, 102), (69, 146), (51, 146)]
    for s in (strap_top, strap_bot):
        sk.paint(sk.poly_mask(s), col, ol, 0.9)
    d = detail_of(col)
    if a["Strap Material"] == "Stainless Steel":
        for y in list(range(20, 58, 6)) + list(range(106, 146, 6)):
            sk.line([(50.5, y), (69.5, y)], shade(col, 0.7), 0.7)
        sk.line([(60, 16), (60, 58)], shade(col, 0.82), 0.5)
        sk.line([(60, 102), (60, 146)], shade(col, 0.82), 0.5)
    else:
        if a["Strap Material"] == "Leather":
            for s in ((53, 17, 53, 57), (67, 17, 67, 57), (53, 103, 53, 145), (67, 103, 67, 145)):
                for k in range(8):
                    y = s[1] + (s[3] - s[1]) * (k + 0.5) / 8
                    sk.dot(s[0], y, 0.4, shade(col, 1.5))
        for y in range(114, 144, 7):
            sk.dot(60, y, 1.2, shade(col, 0.45))
        sk.line([(50, 24), (70, 24)], (200, 200, 205), 1.0)    # buckle keeper
    sk.paint(sk.rrect_mask(84, 75, 90, 85, 1.2), case, shade(case, 0.5), 0.5)   # crown
    sk.paint(sk.ellipse_mask(34, 54, 86, 106), case, shade(case, 0.5), 0.9)
    sk.paint(sk.ellipse_mask(39, 59, 81, 101), dial, shade(case, 0.6), 0.5)
    tick = (40, 40, 44) if luminance(dial) > 128 else (235, 235, 235)
    for h in range(12):
        ang = math.radians(h * 30)
        r0, r1 = (15.5, 19.5) if h % 3 == 0 else (17.5, 19.5)
        sk.line([(60 + r0 * math.sin(ang), 80 - r0 * math.cos(ang)),
                 (60 + r1 * math.sin(ang), 80 - r1 * math.cos(ang))], tick, 1.2 if h % 3 == 0 else 0.6)
    hour, minute = rng.uniform(0, 12), rng.uniform(0, 60)
    for ang, ln, w in ((hour * 30, 10, 1.8), (minute * 6, 15, 1.2)):
        t = math.radians(ang)
        sk.line([(60, 80), (60 + ln * math.sin(t), 80 - ln * math.cos(t))], tick, w)
    t = math.radians(rng.uniform(0, 360))
    sk.line([(60, 80), (60 + 17 * math.sin(t), 80 - 17 * math.cos(t))], (200, 40, 40), 0.5)
    sk.dot(60, 80, 1.4, case)


def lens_outline(shape, cx, cy, mirror):
    """Polygon of one lens; mirror=+1 for the right lens, -1 for the left."""
    if shape == "Round":
        return arc(cx, cy, 14, 14, 0, 360, 32)
    if shape == "Rectangle":
        pts = []
        for (x, y, a0) in ((cx + 13, cy - 8, 270), (cx + 13, cy + 8, 0), (cx - 13, cy + 8, 90),
                           (cx - 13, cy - 8, 180)):
            pts += arc(x - (4 if x > cx else -4), y - (4 if y > cy else -4), 4, 4, a0, a0 + 90, 4)
        return pts
    if shape == "Wayfarer":
        # wider at the top, outer upper corner raised
        raw = [(-16, -12), (16, -11), (15, 4), (9, 12), (-8, 12), (-14, 4)]
    else:  # Aviator: teardrop, drooping towards the nose
        raw = [(-15, -10), (-3, -12), (12, -11), (16, -4), (13, 8), (4, 15), (-8, 13), (-14, 2)]
    return [(cx + x * mirror, cy + y) for x, y in raw]


def draw_sunglasses(sk, col, a, rng):
    frame = col
    ol = outline_of(col)
    lens = {"Black": (30, 30, 34), "Brown": (92, 60, 34), "Green": (40, 70, 48),
            "Blue": (36, 60, 110)}[a["Lens Colour"]]
    thick = 1.2 if a["Frame Material"] == "Metal" else 2.6
    shape = a["Frame Shape"]
    # temples going backwards (drawn first, behind the front)
    sk.line([(22, 72), (12, 70), (8, 74)], shade(frame, 0.85), thick * 0.9)
    sk.line([(98, 72), (108, 70), (112, 74)], shade(frame, 0.85), thick * 0.9)
    for cx, m in ((37, -1), (83, 1)):
        poly = lens_outline(shape, cx, 80, m)
        mask = sk.poly_mask(poly)
        sk.paint(mask, lens, frame, thick)
        # thin dark edge around the frame so light frames still read
        k = 2 * max(1, int(round((thick + 0.6) * SS * sk.s))) + 1
        ring = mask.filter(ImageFilter.MaxFilter(k))
        inner = mask.filter(ImageFilter.MaxFilter(2 * max(1, int(round(thick * SS * sk.s))) + 1))
        edge = Image.fromarray(np.array(ring) - np.array(inner)).convert("L")
        sk.img.paste(ol, (0, 0, *sk.img.size), edge)
        sk.line([(cx - 8, 74), (cx - 2, 70)], shade(lens, 2.0), 1.2)    # glare streak
    sk.line(arc(60, 80, 8, 7, 200, 340, 8), frame, thick * 0.9)        # bridge
    if shape == "Aviator":
        sk.line([(48, 69), (72, 69)], frame, thick)                      # double bridge
    for cx in (52, 68):
        sk.dot(cx, 83, 1.3, (230, 230, 228), (150, 150, 150))           # nose pads


DRAWERS = {
    "Tshirts": draw_tshirt,
    "Shirts": draw_shirt,
    "Dresses": draw_dress,
    "Jeans": lambda sk, c, a, r: draw_bottoms(sk, c, a, r, jeans=True),
    "Trousers": lambda sk, c, a, r: draw_bottoms(sk, c, a, r, jeans=False),
    "Skirts": draw_skirt,
    "Casual Shoes": draw_casual_shoe,
    "Heels": draw_heel,
    "Handbags": draw_handbag,
    "Caps": draw_cap,
    "Watches": draw_watch,
    "Sunglasses": draw_sunglasses,
}


def draw_product(p: dict) -> Image.Image:
    rng = random.Random(f"{SEED}:{p['id']}")        # per-product stream: stable if others change
    base = COLOURS[p["baseColour"]]
    col = shade(base, rng.uniform(0.9, 1.0)) if rng.random() < 0.5 else shade(base, rng.uniform(1.0, 1.08))
    if luminance(base) > 225:   # white products sit on a slightly greyer backdrop
        bg = tuple(rng.randint(222, 236) for _ in range(3))
    else:
        t = rng.randint(238, 252)
        bg = tuple(clamp(t + rng.randint(-4, 3)) for _ in range(3))
    sk = Sketch(rng, bg)
    DRAWERS[p["articleType"]](sk, col, p["attributes"], rng)
    return sk.finish()


# --------------------------------------------------------------------------

def main() -> None:
    rng = random.Random(SEED)
    products = make_products(rng)
    IMAGES.mkdir(parents=True, exist_ok=True)
    for old in IMAGES.glob("*.jpg"):
        old.unlink()
    for p in products:
        if p["image"] is None:
            continue
        draw_product(p).save(HERE / p["image"], "JPEG", quality=JPEG_QUALITY, optimize=True)
    with PRODUCTS.open("w", encoding="utf-8", newline="\n") as f:
        for p in products:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    n_img = sum(p["image"] is not None for p in products)
    print(f"wrote {len(products)} products ({n_img} with images) to {HERE}")


if __name__ == "__main__":
    main()
