"""`moonsearch serve`: the HTTP API and the shop page over one index (FastAPI + uvicorn).

Needs the `serve` extra (`pip install -e ".[serve]"`); the rest of moonsearch does not.
"""

from moonsearch.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app", "serve"]


def create_app(config, served=None):
    from moonsearch.serve.app import create_app as make

    return make(config, served)


def serve(config) -> None:
    from moonsearch.serve.app import serve as run

    run(config)
