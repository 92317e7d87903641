"""Fashion200k test split in its official layout.

The download holds ``labels/{dress,jacket,pants,skirt,top}_{train,test}_detect_all.txt``,
one image per line, tab-separated: image path (relative to the dataset's root folder, e.g.
``women/dresses/casual_and_day_dresses/57996836/57996836_9.jpeg``), detection score, and the
product description. A product is the folder holding its images (``57996836`` above), which
is how the benchmark ties several photos to one description.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

from moonsearch.errors import MoonsearchError
from moonsearch.eval.datasets import clean_text, existing_path

CATEGORIES = ("dress", "jacket", "pants", "skirt", "top")


@dataclass(frozen=True)
class F200kImage:
    path: Path  # absolute: root / the path in the label file
    product: str
    category: str
    description: str


@dataclass
class Fashion200k:
    root: Path
    images: list[F200kImage]
    missing_files: list[str] = dataclass_field(default_factory=list)  # label files not found
    skipped: list[tuple[str, str]] = dataclass_field(default_factory=list)  # (file:line, reason)

    @property
    def products(self) -> int:
        return len({image.product for image in self.images})


def _read_label_file(path: Path, root: Path, category: str, skipped: list) -> list[F200kImage]:
    images = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MoonsearchError(f"{path} is not valid UTF-8 text") from None
    except OSError as exc:
        raise MoonsearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3:
            skipped.append((where, f"expected 3 tab-separated fields, got {len(parts)}"))
            continue
        relative, description = parts[0].strip(), clean_text("\t".join(parts[2:]))
        if not relative or description is None:
            skipped.append((where, "empty image path or description"))
            continue
        product = Path(relative).parent.name
        if not product:
            skipped.append((where, "image path has no product folder"))
            continue
        images.append(F200kImage(root / relative, product, category, description))
    return images


def load_fashion200k(data: str | Path, split: str = "test", limit: int | None = None) -> Fashion200k:
    """Read the split's five label files; `limit` keeps that many products, taken in turn
    from each category (in file order) so a small run still covers all five."""
    root = existing_path(data, "Fashion200k folder")
    if root.is_file() or not (root / "labels").is_dir():
        raise MoonsearchError(f"{root} is not a Fashion200k folder: expected {root / 'labels'}/")
    skipped: list[tuple[str, str]] = []
    missing: list[str] = []
    per_category: dict[str, list[F200kImage]] = {}
    for category in CATEGORIES:
        path = root / "labels" / f"{category}_{split}_detect_all.txt"
        if not path.is_file():
            missing.append(path.name)
            continue
        per_category[category] = _read_label_file(path, root, category, skipped)
    if not per_category:
        raise MoonsearchError(f"no Fashion200k label files for split '{split}' in {root / 'labels'}")
    images = [image for category in CATEGORIES for image in per_category.get(category, [])]
    if not images:
        raise MoonsearchError(f"no usable line in the Fashion200k '{split}' label files ({len(skipped)} skipped)")
    data = Fashion200k(root, images, missing, skipped)
    return data if limit is None else first_products(data, limit)


def first_products(data: Fashion200k, limit: int) -> Fashion200k:
    """The same split cut to all images of `limit` products, taken in turn from each category
    (in file order) so that a small run still covers all five."""
    per_category: dict[str, list[F200kImage]] = {}
    for image in data.images:
        per_category.setdefault(image.category, []).append(image)
    orders = {c: list(dict.fromkeys(image.product for image in images)) for c, images in per_category.items()}
    chosen: set[tuple[str, str]] = set()
    depth = 0
    while len(chosen) < limit and any(depth < len(o) for o in orders.values()):
        for category, products in orders.items():
            if depth < len(products) and len(chosen) < limit:
                chosen.add((category, products[depth]))
        depth += 1
    images = [image for image in data.images if (image.category, image.product) in chosen]
    return Fashion200k(data.root, images, data.missing_files, data.skipped)


load = load_fashion200k  # the name every benchmark module shares (used by moonsearch.eval.runner)
