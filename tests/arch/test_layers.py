"""The house rules, checked on every import in the package (lazy ones inside functions included).

Each module belongs to a layer (``LAYERS``, lowest first); a module may import its own layer
and the layers below, never one above. Two subpackages never import each other, and the
front-ends (server, widgets, cli) never import one another. ``docs/architecture.md``
draws the same picture.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "workbench"

# unit -> layer; a unit is a top-level module (``store``) or subpackage (``jobs``)
LAYERS: dict[str, int] = {
    # 0 foundation: no workbench imports above it
    "errors": 0, "records": 0, "home": 0, "settings": 0, "store": 0, "stamps": 0, "crypto": 0, "job_states": 0,
    "processes": 0,
    # 1 records and their rules
    "users": 1, "signing": 1, "imports": 1, "configs": 1, "dataset_validation": 1, "datasets": 1,
    "models": 1, "tinymodel": 1, "gguf_models": 1, "sweep": 1, "jobfiles": 1, "chat_encoding": 1, "quotas": 1,
    "usage": 1, "usage_rollups": 1, "llm_endpoints": 1, "user_secrets": 1,  # usage rows in SQLite and their rollups; encrypted secrets
    "local_server": 1,  # where this home's server listens
    "client": 1,  # the SDK: HTTP only, so the remote widgets (and anyone) can use it
    # 2 the job system: the queue and the engine side by side (the engine never imports jobs)
    "jobs": 2, "training": 2,
    # 3 what is built on jobs
    "results": 3, "serving": 3, "graphrag": 3, "analytics": 3, "experiments": 3,
    "testing": 3,  # helpers for tests and benchmarks: a scratch home, the fast config, a finished job
    # 4 front-ends, thin
    "server": 4, "widgets": 4, "cli": 4, "notebooks": 4,
}
FRONT_ENDS = {"server", "widgets", "cli"}


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "workbench" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every workbench module ``path`` imports, at any depth (relative imports resolved)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("workbench"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("workbench"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)  # ``from . import home``
    return out


def edges() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        src = unit_of(module_name(path)) if path.parent != PACKAGE or path.name != "__init__.py" else None
        if src is None:
            continue
        for target in imports_of(path):
            dst = unit_of(target)
            if dst and dst != src and (dst in LAYERS or (PACKAGE / dst).exists() or (PACKAGE / f"{dst}.py").exists()):
                found[(src, dst)].append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_module_has_a_layer() -> None:
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    units |= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert units - set(LAYERS) == set(), "add the new module to LAYERS (and to docs/architecture.md)"


def test_no_module_imports_a_higher_layer() -> None:
    bad = [f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]}) in {', '.join(sorted(set(where)))}"
           for (src, dst), where in edges().items()
           if LAYERS.get(dst, 0) > LAYERS.get(src, 0)]
    assert bad == []


def test_no_two_units_import_each_other() -> None:
    found = edges()
    pairs = sorted({tuple(sorted(pair)) for pair in found if pair[::-1] in found})
    assert pairs == [], [(a, b, found[(a, b)], found[(b, a)]) for a, b in pairs]


def test_front_ends_never_import_one_another() -> None:
    bad = [(src, dst, where) for (src, dst), where in edges().items() if src in FRONT_ENDS and dst in FRONT_ENDS]
    assert bad == []


@pytest.mark.parametrize("module", ["workbench.jobs.service", "workbench.server.app", "workbench.cli",
                                    "workbench.jobfiles.views", "workbench.widgets.backend"])
def test_light_modules_do_not_import_the_training_stack(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
