"""The HTTP API and the shop page: FastAPI over one ServedIndex, loaded and warmed at start.

Endpoints are plain `def` functions, so FastAPI runs them in its thread pool: searches proceed
side by side (FAISS, ONNX Runtime and numpy release the GIL), and ServedIndex keeps them off
the DuckDB connection. Every error a request can cause is JSON with a 4xx status and one line
saying what to change; anything else is a 500 whose body carries no traceback.
"""

# no `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import mimetypes
import os
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import FastAPI, File, Form, Query as Q, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from moonsearch.errors import MoonsearchError, UnknownProductError
from moonsearch.serve.config import ServeConfig
from moonsearch.serve.queries import NotFound, Query, RankedLists, facets, search_page, similar
from moonsearch.serve.state import ServedIndex

log = logging.getLogger("moonsearch.serve")
STATIC = Path(__file__).parent / "static"
WEB_IMAGE_TYPES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
IMAGE_FIELDS = ("image", "images", "image_path")


class ApiError(Exception):
    """An error with its HTTP status, answered as {"error": message, "status": code}."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class PageJSON(JSONResponse):
    """json.dumps without FastAPI's jsonable_encoder walk; a numpy scalar that reaches a page
    (a score or count left as numpy) is written as its Python value instead of failing."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=lambda value: value.item() if hasattr(value, "item") else str(value)).encode("utf-8")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class LimitsMiddleware:
    """Pure ASGI: refuses bodies past the upload limit before they are read (413), and answers
    503 when a request runs past the timeout (the worker thread finishes on its own)."""

    def __init__(self, app, max_body: int, timeout_s: float):
        self.app = app
        self.max_body = max_body
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = _error(413, f"request body of {int(length)} bytes is over the limit of {self.max_body} bytes")
            return await response(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise ApiError(413, f"request body is over the limit of {self.max_body} bytes")
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracked_send), self.timeout_s)
        except asyncio.TimeoutError:
            if not started:
                await _error(503, f"the request took longer than {self.timeout_s:g} s")(scope, receive, send)
        except ApiError as exc:
            if not started:
                await _error(exc.status, exc.message)(scope, receive, send)


class UpsertBody(BaseModel):
    products: list[dict[str, Any]] = Field(..., min_length=1, max_length=1000,
                                           description="Catalog records; image paths relative to the catalog folder.")


def catalog_root(index) -> Path:
    """The folder a catalog's image paths live under: the catalog itself, or its file's folder."""
    source = Path(str((index.manifest.source or {}).get("catalog", index.folder)))
    return (source if source.is_dir() else source.parent).resolve()


def create_app(config: ServeConfig, served: ServedIndex | None = None) -> FastAPI:
    """The app over an index; `served` lets tests share an already opened one."""
    served = served or ServedIndex(config.index, device=config.device, warm_text=config.warm_text)
    if config.follow_s:
        served.follow(config.follow_s)
    cache = RankedLists()
    explain_lock = threading.Lock()   # explain runs the fusion model many times: one at a time
    app = FastAPI(title="moonsearch", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Product search by text, image or both, with filters, facets and similar products.")
    app.openapi_version = "3.0.3"     # the bundled Swagger UI (4.x) renders 3.0 documents
    app.state.served = served
    app.state.config = config
    app.add_middleware(LimitsMiddleware, max_body=config.max_upload_bytes + 64 * 1024,
                       timeout_s=config.request_timeout_s)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    # -- errors: JSON, 4xx for what the client can fix, never a traceback --

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(MoonsearchError)
    async def _user_error(request: Request, exc: MoonsearchError):
        return _error(404 if isinstance(exc, NotFound) else 400, str(exc).splitlines()[0] if str(exc) else "bad request")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return _error(422, f"{where or 'request'}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # -- helpers --

    def read_image(upload: UploadFile | None):
        """The uploaded query photo as the searcher reads files, within the size and pixel limits;
        and a digest of its bytes (what caches key on)."""
        if upload is None or not upload.filename and not upload.size:
            return None, None
        data = upload.file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise ApiError(413, f"image upload is over the limit of {config.max_upload_bytes} bytes")
        if not data:
            raise ApiError(400, "the uploaded image is empty")
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
        except Exception:
            width = height = 0   # not an image PIL knows: load_query_image names the reason below
        if width * height > config.max_image_pixels:
            raise ApiError(413, f"image of {width}x{height} pixels is over the limit of {config.max_image_pixels} pixels")
        from moonsearch.catalog.images import load_query_image

        suffix = Path(upload.filename or "").suffix[:10]
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                picture = load_query_image(tmp.name)
            except MoonsearchError as exc:
                message = str(exc).replace(tmp.name, repr(upload.filename or "upload"))
                raise ApiError(400, message) from None
        return picture, hashlib.sha256(data).hexdigest()

    def make_query(q, filters, limit, offset, sort, min_score, view, hybrid, image=None, image_key=None) -> Query:
        if offset + limit > config.max_window:
            raise ApiError(400, f"offset + limit is {offset + limit}, over the limit of {config.max_window}")
        return Query(text=q or None, image=image, image_key=image_key, filters=list(filters or []), view=view,
                     hybrid=hybrid, sort=sort, min_score=min_score, offset=offset, limit=limit)

    # Search and facet payloads are built from JSON-native values (str, int, float, lists, dicts
    # parsed from JSON), so they go straight to json.dumps: FastAPI's jsonable_encoder walk of a
    # 24-hit page cost 1.4 ms of the ~11 ms of CPU a text search takes, all of it holding the GIL.
    def run_search(query: Query) -> JSONResponse:
        with served.reading() as state:
            return PageJSON(search_page(state, query, cache, config.candidates))

    def run_facets(query: Query, fields: list[str] | None) -> JSONResponse:
        with served.reading() as state:
            return PageJSON(facets(state, query, cache, config.candidates, fields or config.facet_fields or None))

    def check_token(request: Request) -> None:
        if not config.write_token:
            raise ApiError(403, "writes are off: start the server with a write token (--token-file or "
                                "MOONSEARCH_SERVE_TOKEN) to enable them")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.write_token.encode()):
            raise ApiError(401, "a valid bearer token is needed for writes", {"WWW-Authenticate": "Bearer"})

    # -- query parameters shared by GET and POST --
    Text = Annotated[Optional[str], Q(max_length=500, description="Query text.")]
    Filters = Annotated[list[str], Q(description="field=value, field=a,b, field!=v, field<n ...; repeatable.")]
    Limit = Annotated[int, Q(ge=1, le=config.max_k, description="Page size.")]
    Offset = Annotated[int, Q(ge=0, description="Results to skip (pages are stable).")]
    Sort = Annotated[str, Q(pattern="^(relevance|price_asc|price_desc)$")]
    View = Annotated[str, Q(pattern="^(mm|image|text)$")]

    # -- the page and the docs (all assets local) --

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    try:
        import swagger_ui_bundle

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
        swagger = True
    except ImportError:
        swagger = False

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/docs", include_in_schema=False)
    def docs():
        if not swagger:
            return HTMLResponse("<p>Install swagger-ui-bundle for the docs page; the API is at "
                                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="moonsearch API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    # -- read endpoints --

    @app.get("/health", tags=["service"])
    def health():
        """Ready once the index and encoder are loaded and warmed (the server starts after)."""
        state = served.state
        return {"status": "ok", "products": state.index.manifest.counts.get("products"),
                "generation": state.generation, "encoder": state.index.manifest.encoder.get("id"),
                "ready_seconds": round(served.ready_seconds, 2), "worker": os.getpid()}

    @app.get("/info", tags=["service"])
    def info():
        """The index: counts, display fields, filterable fields, whether writes are on."""
        state = served.state
        manifest = state.index.manifest
        return {"products": manifest.counts.get("products"), "counts": manifest.counts,
                "encoder": manifest.encoder.get("id"), "display_fields": manifest.display_fields,
                "views": manifest.views, "generation": state.generation,
                "filterable_fields": [{"field": k, "products": n} for k, n in state.index.store.attribute_keys()],
                "writes": bool(config.write_token), "sorts": ["relevance", "price_asc", "price_desc"],
                "limits": {"max_upload_bytes": config.max_upload_bytes, "max_image_pixels": config.max_image_pixels,
                           "max_k": config.max_k, "max_window": config.max_window,
                           "candidates": config.candidates}}

    @app.get("/search", tags=["search"])
    def search_get(q: Text = None, filter: Filters = [], limit: Limit = 24, offset: Offset = 0,
                   sort: Sort = "relevance", min_score: Annotated[Optional[float], Q(ge=-1, le=1)] = None,
                   view: View = "mm", hybrid: Optional[bool] = None, k: Annotated[Optional[int], Q(ge=1)] = None):
        """Search by text (no text: browse the filtered catalog). `k` is an alias of `limit`.
        The ranking is `moonsearch query`'s; `min_score` cuts on the query-product cosine."""
        if k is not None:
            limit = min(k, config.max_k)
        return run_search(make_query(q, filter, limit, offset, sort, min_score, view, hybrid))

    @app.post("/search", tags=["search"])
    def search_post(image: Annotated[Optional[UploadFile], File(description="Query photo.")] = None,
                    q: Annotated[Optional[str], Form(max_length=500)] = None,
                    filter: Annotated[list[str], Form()] = [], limit: Annotated[int, Form(ge=1, le=config.max_k)] = 24,
                    offset: Annotated[int, Form(ge=0)] = 0,
                    sort: Annotated[str, Form(pattern="^(relevance|price_asc|price_desc)$")] = "relevance",
                    min_score: Annotated[Optional[float], Form(ge=-1, le=1)] = None,
                    view: Annotated[str, Form(pattern="^(mm|image|text)$")] = "mm",
                    hybrid: Annotated[Optional[bool], Form()] = None):
        """Search by an uploaded photo, text, or both (multipart form)."""
        picture, key = read_image(image)
        return run_search(make_query(q, filter, limit, offset, sort, min_score, view, hybrid, picture, key))

    @app.get("/facets", tags=["search"])
    def facets_get(q: Text = None, filter: Filters = [], min_score: Annotated[Optional[float], Q(ge=-1, le=1)] = None,
                   view: View = "mm", hybrid: Optional[bool] = None,
                   field: Annotated[list[str], Q(description="Attributes to count (default: chosen).")] = []):
        """Value counts per attribute over the query's whole candidate set and filters."""
        return run_facets(make_query(q, filter, 1, 0, "relevance", min_score, view, hybrid), field)

    @app.post("/facets", tags=["search"])
    def facets_post(image: Annotated[Optional[UploadFile], File()] = None,
                    q: Annotated[Optional[str], Form(max_length=500)] = None,
                    filter: Annotated[list[str], Form()] = [],
                    min_score: Annotated[Optional[float], Form(ge=-1, le=1)] = None,
                    view: Annotated[str, Form(pattern="^(mm|image|text)$")] = "mm",
                    hybrid: Annotated[Optional[bool], Form()] = None, field: Annotated[list[str], Form()] = []):
        """Facets of a photo query (multipart form)."""
        picture, key = read_image(image)
        return run_facets(make_query(q, filter, 1, 0, "relevance", min_score, view, hybrid, picture, key), field)

    def product_record(state, product_id: str) -> dict:
        row = state.row_of(product_id)
        if row is None:
            raise NotFound(f"no product with id '{product_id}'")
        return state.index.store.products([row])[0]

    @app.get("/products/{product_id}", tags=["products"])
    def product(product_id: str):
        """One product's record."""
        with served.reading() as state:
            rec = product_record(state, product_id)
        images = list(rec["images"] or [])
        return {"id": rec["id"], "title": rec["title"], "description": rec["description"],
                "attributes": rec["attributes"], "has_image": rec["has_image"],
                "images": [f"/products/{rec['id']}/image?n={i}" for i in range(len(images))]}

    @app.get("/products/{product_id}/similar", tags=["products"])
    def similar_products(product_id: str, k: Annotated[int, Q(ge=1, le=50)] = 8, filter: Filters = []):
        """Products nearest to this one's stored vector, itself left out."""
        with served.reading() as state:
            filters = state.prepare_filters(filter)
            hits = similar(state, product_id, k, filters)
        results = []
        for hit in hits:
            entry = hit.to_json()
            entry["image_url"] = f"/products/{hit.id}/image" if hit.image else None
            results.append(entry)
        return {"product": product_id, "results": results}

    @app.get("/products/{product_id}/image", tags=["products"])
    def product_image(product_id: str, n: Annotated[int, Q(ge=0, le=100)] = 0):
        """The product's n-th image; only files inside the catalog's folder are served."""
        with served.reading() as state:
            rec = product_record(state, product_id)
            root = catalog_root(state.index)
        images = list(rec["images"] or [])
        if n >= len(images):
            raise NotFound(f"product '{product_id}' has {len(images)} image(s), no image {n}")
        path = Path(images[n])
        path = (path if path.is_absolute() else root / path).resolve()
        if not path.is_relative_to(root):
            raise ApiError(403, f"image {n} of product '{product_id}' is outside the catalog folder: not served")
        if not path.is_file():
            raise NotFound(f"image {n} of product '{product_id}' is missing on disk")
        headers = {"Cache-Control": "public, max-age=3600"}
        if path.suffix.lower() in WEB_IMAGE_TYPES:
            return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "image/jpeg", headers=headers)
        from moonsearch.catalog.images import ImageError, load_image

        try:
            picture = load_image(path)   # TIFF, BMP, ...: browsers cannot show them; send a PNG
        except ImageError as exc:
            raise ApiError(422, f"image {n} of product '{product_id}' cannot be read: {exc.reason}") from None
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers=headers)

    def run_explain(product_id: str, q: str | None, picture, method: str, fmt: str, top: int):
        from moonsearch.explain import explain

        with served.reading() as state, explain_lock:
            row = state.row_of(product_id)
            if row is None:
                raise NotFound(f"no product with id '{product_id}'")
            result = explain(state.index, product_id, text=q, image=picture, method=method)
        heatmap = None
        if result.product.image is not None and result.heatmap_grid is not None:
            buffer = io.BytesIO()
            result.heatmap(scale=2).save(buffer, format="PNG", optimize=True)
            heatmap = buffer.getvalue()
        if fmt == "png":
            if heatmap is None:
                raise ApiError(404, f"product '{product_id}' has no image: no heatmap")
            return Response(heatmap, media_type="image/png")
        payload = result.to_json()
        return {"product": payload["product"]["id"], "title": payload["product"]["title"], "score": payload["score"],
                "method": payload["method"], "encoder": payload["encoder"], "shares": payload["shares"],
                "words": sorted(payload["words"], key=lambda w: -w["weight"])[:top], "note": payload.get("note"),
                "heatmap": None if heatmap is None else "data:image/png;base64," + base64.b64encode(heatmap).decode()}

    Method = Annotated[str, Q(pattern="^(occlusion|decomposition)$")]

    @app.get("/explain", tags=["explain"])
    def explain_get(id: Annotated[str, Q(description="Product id.")], q: Annotated[str, Q(min_length=1, max_length=500)],
                    method: Method = "occlusion", format: Annotated[str, Q(pattern="^(json|png)$")] = "json",
                    top: Annotated[int, Q(ge=1, le=100)] = 15):
        """Why a product matched a text query: word weights and the image-patch heatmap."""
        return run_explain(id, q, None, method, format, top)

    @app.post("/explain", tags=["explain"])
    def explain_post(id: Annotated[str, Form()], image: Annotated[Optional[UploadFile], File()] = None,
                     q: Annotated[Optional[str], Form(max_length=500)] = None,
                     method: Annotated[str, Form(pattern="^(occlusion|decomposition)$")] = "occlusion",
                     format: Annotated[str, Form(pattern="^(json|png)$")] = "json",
                     top: Annotated[int, Form(ge=1, le=100)] = 15):
        """Why a product matched a photo query (with or without text)."""
        picture, _ = read_image(image)
        return run_explain(id, q, picture, method, format, top)

    # -- writes: off unless a token is configured --

    def write_summary(summary) -> dict:
        out = asdict(summary)
        out["report"] = out["report"][:20]
        return out

    @app.post("/products", tags=["writes"])
    def upsert(body: UpsertBody, request: Request):
        """Insert or replace products (bearer token). Image paths are relative to the catalog
        folder and must stay inside it."""
        check_token(request)
        root = catalog_root(served.state.index)
        for number, record in enumerate(body.products, 1):
            for field in IMAGE_FIELDS:
                value = record.get(field)
                paths = value if isinstance(value, list) else str(value).split("|") if value else []
                for p in paths:
                    resolved = (root / str(p).strip()).resolve()
                    if Path(str(p).strip()).is_absolute() or not resolved.is_relative_to(root):
                        raise ApiError(400, f"record {number}: image path '{p}' leaves the catalog folder")
        summary = served.write(lambda writer: writer.upsert(body.products, root=root))
        return write_summary(summary)

    @app.delete("/products/{product_id}", tags=["writes"])
    def delete(product_id: str, request: Request):
        """Remove one product (bearer token)."""
        check_token(request)
        # Asked of the writer, which reads the newest state: with several workers, the product
        # may have been added through another worker a moment ago, before this one followed.
        try:
            summary = served.write(lambda writer: writer.delete([product_id]))
        except UnknownProductError:
            raise NotFound(f"no product with id '{product_id}'") from None
        return write_summary(summary)

    return app


CONFIG_ENV = "MOONSEARCH_SERVE_CONFIG"   # how `serve --workers N` hands its settings to each worker


def worker_app() -> FastAPI:
    """The app of one of several worker processes (uvicorn's app factory): the settings come
    from the parent through CONFIG_ENV; each worker loads and warms the index before it accepts."""
    app = create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))
    print(json.dumps({"ready": True, "worker": os.getpid(),
                      "ready_seconds": round(app.state.served.ready_seconds, 2)}), flush=True)
    return app


def serve(config: ServeConfig) -> None:
    """Load and warm the index, then listen. One process by default; `config.workers` > 1 runs
    that many processes on one socket (uvicorn's workers), each with the index loaded: Python
    runs one thread at a time per process, so one process answers on about one core however
    many clients wait (measured: 8 clients, 2 cores, CPU ~1 core busy)."""
    import uvicorn

    options = dict(host=config.host, port=config.port, log_level="warning", timeout_keep_alive=5,
                   limit_concurrency=256, access_log=False)
    if config.workers > 1:
        os.environ[CONFIG_ENV] = config.to_json()
        print(json.dumps({"starting": True, "url": f"http://{config.host}:{config.port}/",
                          "workers": config.workers}), flush=True)
        uvicorn.run("moonsearch.serve.app:worker_app", factory=True, workers=config.workers, **options)
        return
    app = create_app(config)
    print(json.dumps({"ready": True, "url": f"http://{config.host}:{config.port}/",
                      "ready_seconds": round(app.state.served.ready_seconds, 2)}), flush=True)
    uvicorn.run(app, **options)
