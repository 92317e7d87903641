"""Reading product catalogs (JSONL, CSV, Parquet, Kaggle styles.csv) and their images."""

from moonsearch.catalog.images import MIN_IMAGE_SIDE, TOO_SMALL, ImageError, first_image, load_image
from moonsearch.catalog.models import CatalogScan, Product, Skip
from moonsearch.catalog.reader import Catalog, open_catalog

__all__ = [
    "open_catalog",
    "Catalog",
    "CatalogScan",
    "Product",
    "Skip",
    "load_image",
    "first_image",
    "ImageError",
    "TOO_SMALL",
    "MIN_IMAGE_SIDE",
]
