"""The layer map of ``docs/DESIGN_NOTES.md``, enforced: a sub-package imports only from
layers below its own (function-level imports count, ``TYPE_CHECKING`` ones do not).

``LAYERS`` is the map, bottom first; the docs print the same table (checked below), so
changing one without the other fails.
"""

from __future__ import annotations

import re

from test_imports import PACKAGE_DIR, REPO, Edge, import_edges, unit

LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("parallel", "lora"),
    ("rundir", "trainlib", "models"),
    ("prompts", "detection", "scoring", "pairs", "sampling"),
    ("training", "evaluation"),
    ("toy", "report", "rl"),
    ("loop",),
    ("demo",),
    ("cli",),
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def upward_edges(edges: list[Edge], level: dict[str, int] = LEVEL) -> list[Edge]:
    """Edges from a unit to one in its own layer or above (imports within one unit are fine)."""
    out = []
    for e in edges:
        a, b = unit(e.source), unit(e.target)
        if a and b and a != b and level[b] >= level[a]:
            out.append(e)
    return out


def test_every_sub_package_has_a_layer():
    units = {unit(m) for m in (e.source for e in import_edges()[0])} - {None}
    top = {p.stem for p in PACKAGE_DIR.iterdir() if p.suffix == ".py" and p.stem != "__init__"}
    top |= {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}
    assert not (units | top) - set(LEVEL), "place new sub-packages in LAYERS and the docs' map"


def test_imports_only_go_down_the_layers():
    bad = upward_edges(import_edges()[0])
    assert not bad, "imports up or across the layer map:\n" + "\n".join(
        f"{e.source} line {e.line} -> {e.target}" for e in bad
    )


def test_top_level_holds_only_the_entry_points():
    loose = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert loose == ["__init__.py", "cli.py", "demo.py"]


def test_the_docs_print_the_same_map():
    text = (REPO / "docs" / "DESIGN_NOTES.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M)
    documented = [tuple(n.strip(" `") for n in names.split(",")) for _, names in rows]
    assert documented == LAYERS


def test_the_check_sees_an_upward_import():
    # a detection module importing the loop (inside a function) is caught
    edges = [Edge("spatialalign.detection.pipeline", "spatialalign.loop.run", 3)]
    assert upward_edges(edges) == edges
    # and an import across one layer (training <-> evaluation) too
    across = [Edge("spatialalign.training.run", "spatialalign.evaluation.compare", 9)]
    assert upward_edges(across) == across
    assert upward_edges([Edge("spatialalign.loop.run", "spatialalign.core.errors", 1)]) == []
