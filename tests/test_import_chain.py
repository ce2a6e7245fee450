"""vitlab's packages form a one-way chain: a module imports its own layer and the layers below it, never one above.

The layers, bottom to top (``docs/architecture.md`` says what each holds and why it sits where it does); a
layer may hold several packages or modules, which may import each other as long as no import cycle forms:

    base     vitlab, vitlab._moved, vitlab.seed, vitlab.timing, vitlab.palette, vitlab.report
    config   vitlab.config
    kernels  vitlab.kernels
    layers   vitlab.layers (TokenLayout among them)
    mixers   vitlab.mixers
    flops    vitlab.flops, vitlab.flops_match
    hub      vitlab.hub (the pretrained-folder mixin the network inherits)
    models   vitlab.models
    weights  vitlab.weights (reading checkpoints and state dicts; a network from a checkpoint)
    data     vitlab.data (the evaluation protocol's splits among them)
    ssl      vitlab.ssl
    eval     vitlab.eval
    engine   vitlab.engine
    tasks    vitlab.tasks
    tools    vitlab.convert, vitlab.export, vitlab.timm, vitlab.memory, vitlab.sweep, vitlab.viz, vitlab.bench,
             vitlab.profile, vitlab.doctor, vitlab.curves
    launch   vitlab.slurm
    cli      vitlab.cli, vitlab.__main__

Every import of a vitlab module sits at the top of its module, except those in :data:`FUNCTION_LEVEL`, each with
its reason. The ``vitlab`` command's ``importlib.import_module`` of one subcommand module (``vitlab.cli.COMMANDS``)
is an import by name within the ``cli`` layer, which this test does not see.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("vitlab", "vitlab._moved", "vitlab.compat", "vitlab.seed", "vitlab.timing", "vitlab.palette", "vitlab.report")),
    ("config", ("vitlab.config",)),
    ("kernels", ("vitlab.kernels",)),
    ("layers", ("vitlab.layers",)),
    ("mixers", ("vitlab.mixers",)),
    ("flops", ("vitlab.flops", "vitlab.flops_match")),
    ("hub", ("vitlab.hub",)),
    ("models", ("vitlab.models",)),
    ("weights", ("vitlab.weights",)),
    ("data", ("vitlab.data",)),
    ("ssl", ("vitlab.ssl",)),
    ("eval", ("vitlab.eval",)),
    ("engine", ("vitlab.engine",)),
    ("tasks", ("vitlab.tasks",)),
    ("tools", ("vitlab.convert", "vitlab.export", "vitlab.timm", "vitlab.memory", "vitlab.sweep", "vitlab.viz",
               "vitlab.bench", "vitlab.profile", "vitlab.doctor", "vitlab.curves")),
    ("launch", ("vitlab.slurm",)),
    ("cli", ("vitlab.cli", "vitlab.__main__")),
]

# file -> (why its vitlab imports sit inside a function, the modules it imports so)
FUNCTION_LEVEL: dict[str, tuple[str, set[str]]] = {
    "vitlab/slurm/train_job.py": (
        "submitit unpickles the job (importing this module) before it installs its signal handlers: the module "
        "stays light, so a SIGUSR2 that comes early finds the handlers in place; the trainer is imported when "
        "the job runs",
        {"vitlab.config", "vitlab.engine.distributed", "vitlab.engine.trainer"}),
}


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the vitlab module imported
    in_function: bool


def module_name(path: Path) -> str:
    """``vitlab/eval/knn.py`` -> ``vitlab.eval.knn``; ``vitlab/eval/__init__.py`` -> ``vitlab.eval``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def vitlab_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "vitlab").rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """Index into :data:`LAYERS` of ``module`` (its longest listed prefix; ``vitlab`` itself only by name)."""
    best, index = "", None
    for i, (_, members) in enumerate(LAYERS):
        for member in members:
            covers = module == member or (member != "vitlab" and module.startswith(member + "."))
            if covers and len(member) > len(best):
                best, index = member, i
    return index


def vitlab_imports(source: str, module: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import of a vitlab module in ``source`` (the module ``module``), top level or inside a function.

    ``from P import name`` imports ``P.name`` where that is a module (``from vitlab.engine import distributed``).
    """
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(child.lineno, a.name, inner) for a in child.names
                             if a.name == "vitlab" or a.name.startswith("vitlab."))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package, up level - 1 packages
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                if base == "vitlab" or base.startswith("vitlab."):
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        found.append(Import(child.lineno, sub if sub in known else base, inner))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def violations(path: str, module: str, source: str, known: set[str], *, is_package: bool = False) -> list[str]:
    """What ``source`` (the file ``path``, module ``module``) does against the chain, one line each."""
    own = layer_of(module)
    if own is None:
        return [f"{path}: {module} is in no layer of the chain (add it to LAYERS and docs/architecture.md)"]
    out = []
    reason, allowed = FUNCTION_LEVEL.get(path, ("", set()))
    for imp in vitlab_imports(source, module, is_package, known):
        target = layer_of(imp.target)
        if target is None:
            out.append(f"{path}:{imp.line}: imports {imp.target}, which is in no layer of the chain")
        elif target > own:
            out.append(f"{path}:{imp.line}: {LAYERS[own][0]} -> {LAYERS[target][0]} runs up the chain "
                       f"({module} imports {imp.target})")
        if imp.in_function and imp.target not in allowed:
            out.append(f"{path}:{imp.line}: {module} imports {imp.target} inside a function (move it to the "
                       f"module's top, or give the reason in FUNCTION_LEVEL)")
    return out


def import_graph(sources: dict[str, tuple[str, bool]], known: set[str]) -> dict[str, set[str]]:
    """Module -> the vitlab modules its top level imports, with the packages each one's import runs first
    (importing ``vitlab.data.loader`` runs ``vitlab/data/__init__.py``), less the importer's own packages
    (already being imported when it runs)."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1 + is_package)}
        edges = set()
        for imp in vitlab_imports(source, module, is_package, known):
            if imp.in_function:
                continue
            parts = imp.target.split(".")
            edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - own - {module}
        graph[module] = edges & set(sources)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def _repo_sources() -> dict[str, tuple[str, bool]]:
    return {m: (p.read_text(), p.name == "__init__.py") for m, p in vitlab_modules().items()}


def test_every_module_is_in_a_layer():
    unplaced = [m for m in vitlab_modules() if layer_of(m) is None]
    assert not unplaced, f"modules in no layer of the chain (add them to LAYERS and docs/architecture.md): {unplaced}"


def test_every_layer_entry_exists():
    modules = vitlab_modules()
    missing = [member for _, members in LAYERS for member in members if member not in modules]
    assert not missing, missing


def test_no_import_runs_up_the_chain_or_hides_in_a_function():
    modules = vitlab_modules()
    known = set(modules)
    problems = [v for m, p in modules.items()
                for v in violations(str(p.relative_to(ROOT)), m, p.read_text(), known, is_package=p.name == "__init__.py")]
    assert not problems, "\n".join(problems)


def test_the_function_level_allowlist_is_still_needed():
    """Each allowlisted import is still there (an entry outliving its import would hide a new one)."""
    known = set(vitlab_modules())
    modules = {str(p.relative_to(ROOT)): (m, p) for m, p in vitlab_modules().items()}
    for path, (reason, allowed) in FUNCTION_LEVEL.items():
        assert reason and path in modules, path
        module, p = modules[path]
        inner = {i.target for i in vitlab_imports(p.read_text(), module, p.name == "__init__.py", known)
                 if i.in_function}
        assert allowed <= inner, (path, allowed - inner)


def test_no_import_cycle():
    sources = _repo_sources()
    cycle = find_cycle(import_graph(sources, set(sources)))
    assert cycle is None, "import cycle at module top level: " + " -> ".join(cycle)


BAD_MIXER = """
from vitlab.layers import RMSNorm
from vitlab.models.layout import TokenLayout


def forward(x):
    from vitlab.engine import distributed

    return distributed
"""


def test_the_checks_catch_arrows_up_the_chain_and_imports_in_functions():
    known = set(vitlab_modules())
    found = violations("vitlab/mixers/bad.py", "vitlab.mixers.bad", BAD_MIXER, known)
    assert found == [
        "vitlab/mixers/bad.py:3: mixers -> models runs up the chain (vitlab.mixers.bad imports vitlab.models.layout)",
        "vitlab/mixers/bad.py:7: mixers -> engine runs up the chain "
        "(vitlab.mixers.bad imports vitlab.engine.distributed)",
        "vitlab/mixers/bad.py:7: vitlab.mixers.bad imports vitlab.engine.distributed inside a function (move it "
        "to the module's top, or give the reason in FUNCTION_LEVEL)",
    ]
    assert violations("vitlab/newpkg/x.py", "vitlab.newpkg.x", "", known) == [
        "vitlab/newpkg/x.py: vitlab.newpkg.x is in no layer of the chain (add it to LAYERS and docs/architecture.md)"]
    relative = vitlab_imports("from ..models import vit\nfrom . import knn\n", "vitlab.eval.protocol", False, known)
    assert [i.target for i in relative] == ["vitlab.models.vit", "vitlab.eval.knn"]


def test_the_cycle_check_catches_a_cycle_within_a_layer():
    known = {"vitlab.eval", "vitlab.eval.a", "vitlab.eval.b"}
    sources = {"vitlab.eval": ("from vitlab.eval.a import f\n", True),
               "vitlab.eval.a": ("from vitlab.eval.b import g\n", False),
               "vitlab.eval.b": ("def g():\n    pass\nfrom vitlab.eval import f\n", False)}
    assert find_cycle(import_graph(sources, known)) is None  # b's import of its own package is no edge
    sources["vitlab.eval.b"] = ("from vitlab.eval.a import f\n", False)
    assert find_cycle(import_graph(sources, known)) == ["vitlab.eval.a", "vitlab.eval.b", "vitlab.eval.a"]


def test_the_docs_list_the_same_chain():
    """``docs/architecture.md``'s table of layers is :data:`LAYERS`, in order."""
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    assert [name for name, _ in rows] == [name for name, _ in LAYERS]
    for (name, cell), (_, members) in zip(rows, LAYERS):
        assert re.findall(r"`([\w.]+)`", cell) == list(members), name


@pytest.mark.parametrize("old, new", [
    ("vitlab.engine.launch:run", "vitlab.cli.train.run"),
    ("vitlab.eval.cli:run", "vitlab.cli.eval.run"),
    ("vitlab.convert.cli:consolidate", "vitlab.cli.convert.consolidate"),
    ("vitlab.export.cli:run", "vitlab.cli.export.run"),
    ("vitlab.sweep:run", "vitlab.cli.sweep.run"),
    ("vitlab.flops:match_flops", "vitlab.flops_match.match_flops"),
    ("vitlab.flops_match:run_match", "vitlab.cli.flops.run_match"),
])
def test_moved_names_say_where_they_went(old, new):
    import importlib

    module, name = old.split(":")
    with pytest.raises(ImportError, match=f"{module}.{name} moved to {new}"):
        exec(f"from {module} import {name}", {})
    with pytest.raises(ImportError, match=f"moved to {new}"):
        getattr(importlib.import_module(module), name)
    new_module, _, new_name = new.rpartition(".")
    assert callable(getattr(importlib.import_module(new_module), new_name))
