"""The names of an index folder's files, in one module below everything that reads or writes
them: the builder and the writer make them, the query layer opens them, and opening an index
for a query should not import the indexing runner (its import alone was a third of a cold query).
"""

from __future__ import annotations

SKIPS_FILE = "skipped.jsonl"
# Products with several images: every image after the one in the product vectors (the first that
# loads) gets its own mm and image vectors in these files; EXTRA_MAP_FILE says whose they are.
EXTRA_VIEWS = ("mm", "image")
EXTRA_MAP_FILE = "extra-images.npz"
# An index built with the photo identity channel (moonsearch.encoder.photo_identity, issue 16)
# holds each product image's identity vector too: vectors-identity.faiss under the product's key
# (zeros for a text-only product), further images in vectors-identity-extra.faiss like the extras
# above. The manifest's `identity` names the model; an index without it has neither file.
IDENTITY_VIEW = "identity"
# The milvus backend's pointer to the Milvus collection its filters run on (moonsearch.store.milvus);
# its vector stores' pointers take the view files' names.
MILVUS_RECORDS_FILE = "milvus-records.json"


def view_file(view: str) -> str:
    return f"vectors-{view}.faiss"


def extra_view_file(view: str) -> str:
    return f"vectors-{view}-extra.faiss"
