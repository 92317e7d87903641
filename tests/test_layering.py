"""Data flows one way through the package (issue 18, item 8):

    cli/serve -> index | search | explain | train -> eval -> store | encoder -> catalog

with shared concepts (errors, file locations, devices, thread policy, shopper queries, photo
changes) in small modules below all of them. Every `moonsearch` import in the package, lazy ones
inside functions included, is read from the source and checked against that order."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "moonsearch"

SHARED = {"errors", "jsonfiles", "progress", "threads", "cache", "locations", "devices", "photos", "shopper"}
RANK = {"catalog": 1, "encoder": 2, "store": 2, "eval": 3,
        "index": 4, "search": 4, "explain": 4, "train": 4, "cli": 5, "serve": 5}
# The one sideways import, with its reason: ProductIndex is the user's table object (search,
# info, and upsert/delete/writer like LanceDB's table); its writes hand over to moonsearch.index.live.
# And `moonsearch serve` is a CLI command that starts the server.
ALLOWED_SIDEWAYS = {("search", "index"), ("cli", "serve")}


FACADE = "moonsearch.__init__"   # names the package itself defines (open_index): for the CLI and server


def submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports() -> list[tuple[str, str, str]]:
    """(importing part, imported part, file) for every moonsearch import in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("moonsearch"):
                names = ([f"moonsearch.{alias.name}" if submodule(alias.name) else FACADE for alias in node.names]
                         if node.module == "moonsearch" else [node.module])
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("moonsearch")]
            else:
                continue
            for name in names:
                target = part_of(name)
                if target and target != source:
                    found.append((source, target, str(relative)))
    return found


def test_every_import_goes_down_the_layers():
    wrong = []
    for source, target, where in imports():
        if source == "__init__" or target in SHARED and source not in SHARED:
            continue   # the package facade (open_index) sits on top; everything may use the shared modules
        if source in SHARED:
            if target not in SHARED:
                wrong.append(f"{where}: shared module {source} imports {target}")
            continue
        if (source, target) in ALLOWED_SIDEWAYS or (target == "__init__" and RANK.get(source) == RANK["cli"]):
            continue
        if target not in RANK or RANK[target] >= RANK[source]:
            wrong.append(f"{where}: {source} imports {target}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_check_sees_lazy_imports_and_knows_every_part():
    found = imports()
    assert ("train", "eval", "train/baseline.py") in found   # a module-level import, allowed
    assert any(s == "cli" and t == "train" for s, t, _ in found)   # cli imports lazily, inside commands
    parts = {p.name if p.is_dir() else p.stem for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    unknown = parts - SHARED - set(RANK) - {"__init__", "__main__"}
    assert not unknown, f"place these in the layers of this test: {sorted(unknown)}"
