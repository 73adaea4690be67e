"""The package's architecture in figures (issue 15), for any commit. Not a test.

    python benchmarks/architecture.py                 # the working tree
    python benchmarks/architecture.py --rev a6a47bf   # a commit (read with git show; nothing is checked out)
    python benchmarks/architecture.py --csv out.csv   # also write the module table

Prints: modules with line counts; the import graph between visrec_utils modules (edges, import
circles, edges from a lower layer to a higher one, ``from x import _private`` across modules);
content-key builders (``hashlib`` users and ``content_key`` call sites) and hand-written atomic
writes (``os.replace`` / ``.replace(`` of a temporary file); lines of code in the notebooks.
Layers (a module may import its own layer or lower ones): core < catalogue < features < tuning
< reports < pipeline, and evaluation beside features (core < catalogue < evaluation < reports).
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"core": 0, "catalogue": 1, "features": 2, "evaluation": 2, "tuning": 3, "reports": 4, "pipeline": 5,
        "cli": 6}
# imports allowed although the ranks alone would allow or forbid them differently
FORBIDDEN = {("evaluation", "features"), ("evaluation", "tuning"), ("features", "evaluation"),
             ("tuning", "evaluation")}


def read_tree(rev: str | None) -> dict[str, str]:
    """``{path: source}`` of the package's ``.py`` files and the notebooks, at ``rev`` or on disk."""
    if rev is None:
        files = [p for p in (ROOT / "visrec_utils").rglob("*.py")] + sorted((ROOT / "notebooks").glob("*.ipynb"))
        return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    keep = [n for n in names if (n.startswith("visrec_utils/") and n.endswith(".py"))
            or (n.startswith("notebooks/") and n.endswith(".ipynb"))]
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout for n in keep}


def module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts[1:]
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def layer(module: str) -> str:
    head = module.split(".")[0]
    if head in RANK:
        return head
    return "cli" if head in ("__main__", "__init__") else "flat"


def imports(module: str, tree: ast.AST, known: set[str]) -> list[tuple[str, list[str]]]:
    """``(imported visrec module, imported names)`` of one module (relative and absolute)."""
    pkg = module.split(".")[:-1] if not module.endswith("__init__") else module.split(".")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("visrec_utils"):
                target = node.module[len("visrec_utils."):]
            else:
                continue
            names = [a.name for a in node.names]
            if target in known:
                out.append((target, names))
            for n in names:  # from . import data
                if f"{target}.{n}".strip(".") in known:
                    out.append((f"{target}.{n}".strip("."), []))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("visrec_utils.") and a.name[len("visrec_utils."):] in known:
                    out.append((a.name[len("visrec_utils."):], []))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def analyse(tree: dict[str, str]) -> dict:
    """Figures of a tree from :func:`read_tree`: ``lines`` per module, ``graph``, ``circles``,
    ``upward`` (imports from a lower layer to a higher one, or between evaluation and
    features/tuning) and ``private`` (``from x import _name`` across modules)."""
    sources = {module_name(k): v for k, v in tree.items() if k.endswith(".py")}
    known = set(sources)
    graph, private, upward = {}, [], []
    for mod, src in sorted(sources.items()):
        edges = imports(mod, ast.parse(src), known)
        graph[mod] = {t for t, _ in edges if t != mod}
        for target, names in edges:
            if target == mod:
                continue
            private += [f"{mod} <- {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
            a, b = layer(mod), layer(target)
            if a != "flat" and b != "flat" and (RANK[b] > RANK[a] or (a, b) in FORBIDDEN):
                upward.append(f"{mod} ({a}) -> {target} ({b})")
    return {"sources": sources, "lines": {m: len(s.splitlines()) for m, s in sources.items()}, "graph": graph,
            "circles": cycles(graph), "upward": upward, "private": private}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default=None, help="a git revision (default: the working tree)")
    p.add_argument("--csv", default=None, help="write the module table (module, layer, lines) here")
    args = p.parse_args(argv)
    tree = read_tree(args.rev)
    found = analyse(tree)
    sources, graph, upward, private = found["sources"], found["graph"], found["upward"], found["private"]
    lines = {m: len(s.splitlines()) for m, s in sources.items()}
    print(f"modules: {len(sources)}, lines: {sum(lines.values())}, largest: "
          + ", ".join(f"{m} {n}" for m, n in sorted(lines.items(), key=lambda x: -x[1])[:3]))
    for m in sorted(lines):
        print(f"  {m:40s} {layer(m):10s} {lines[m]:5d}")
    circ = found["circles"]
    print(f"import edges: {sum(len(v) for v in graph.values())}; circles: {len(circ)} {circ if circ else ''}")
    print(f"imports from a lower layer to a higher one (or evaluation <-> features/tuning): {len(upward)}")
    for u in upward:
        print(f"  {u}")
    print(f"private names imported across modules: {len(private)}")
    for u in private:
        print(f"  {u}")
    hashers = sorted(m for m, s in sources.items() if "hashlib.sha256(" in s)
    key_calls = sum(s.count("content_key(") for m, s in sources.items() if m != "core.store")
    tmp_writes = sorted(m for m, s in sources.items() if "os.replace(" in s or ".tmp" in s and ".replace(" in s)
    print(f"modules building sha256 keys with hashlib: {len(hashers)} {hashers}")
    print(f"content_key call sites outside the store: {key_calls}")
    print(f"modules with their own tmp-and-rename writes: {len(tmp_writes)} {tmp_writes}")
    nb_lines = {}
    for k, v in tree.items():
        if k.endswith(".ipynb"):
            cells = [c for c in json.loads(v)["cells"] if c["cell_type"] == "code"]
            nb_lines[Path(k).stem] = sum(len("".join(c["source"]).splitlines()) for c in cells)
    print(f"notebook code lines: {sum(nb_lines.values())} {nb_lines}")
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["module", "layer", "lines"])
            w.writerows((m, layer(m), n) for m, n in sorted(lines.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
