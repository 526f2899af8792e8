#!/usr/bin/env python3
"""Plain measures of the code, with Python's ast: the longest functions, the largest modules,
and the places that decide something by matching the text of an error message.

    python bench/code_metrics.py [--json]

"Matching error text" is a comparison (``in``, ``==``, ``startswith``, ``endswith``, ``re.search``)
of a string constant against ``str(<exception>)`` or a name bound from one (``msg = str(exc)``),
any method called on ``str(<exception>)`` (``split(": ")``), or a string constant looked for in
anything when it is a piece of a message this code raises (``"no bams3 dataset" in row[-1]``).
Messages of child processes (samtools' stderr lines) are text by nature, and counted too.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TREES = ("bams3", "plugins", "conformance")
TEXT_NAMES = {"msg", "message", "text", "err", "last", "why", "line", "reason"}


def _files(root: pathlib.Path):
    for tree in TREES:
        for p in sorted((root / tree).rglob("*.py")):
            if "tests" not in p.parts and "build" not in p.parts:
                yield p


def _is_str_of_exc(node, exc_names) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str"
            and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in exc_names)


def _raised_texts(trees) -> set[str]:
    """The constant pieces (8+ characters) of every message passed to an exception raised."""
    out = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                for arg in node.exc.args:
                    for c in ast.walk(arg):
                        if isinstance(c, ast.Constant) and isinstance(c.value, str) and len(c.value.strip()) >= 8:
                            out.add(c.value.strip())
    return out


class _Finder(ast.NodeVisitor):
    raised: set[str] = set()

    def __init__(self):
        self.exc_names: set[str] = set()
        self.text_names: set[str] = set()
        self.hits: list[int] = []

    def visit_ExceptHandler(self, node):
        if node.name:
            self.exc_names.add(node.name)
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        for a in node.args.args:
            if a.arg in ("exc", "e", "error", "failure") or (a.annotation is not None and "Exception" in ast.unparse(
                    a.annotation)):
                self.exc_names.add(a.arg)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node):
        if _is_str_of_exc(node.value, self.exc_names):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.text_names.add(t.id)
        self.generic_visit(node)

    def _raised(self, text: str) -> bool:
        """A phrase (8+ characters, with a space) of a message this code raises."""
        text = text.strip()
        return len(text) >= 8 and " " in text and any(text in r for r in self.raised)

    def _texty(self, node) -> bool:
        return _is_str_of_exc(node, self.exc_names) or (isinstance(node, ast.Name) and node.id in self.text_names)

    def visit_Compare(self, node):
        sides = [node.left, *node.comparators]
        consts = [s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
        if any(isinstance(op, (ast.In, ast.NotIn, ast.Eq, ast.NotEq)) for op in node.ops) and consts and (
                any(self._texty(s) for s in sides) or (any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
                                                       and any(self._raised(c) for c in consts))):
            self.hits.append(node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        matching = f.attr in ("startswith", "endswith", "find", "index", "count", "partition") or (
            f.attr == "split" and bool(node.args)) if isinstance(f, ast.Attribute) else False
        if isinstance(f, ast.Attribute) and ((matching and _is_str_of_exc(f.value, self.exc_names)) or (
                f.attr in ("startswith", "endswith") and (self._texty(f.value) or any(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) and self._raised(a.value)
                    for a in node.args)))):
            self.hits.append(node.lineno)
        if isinstance(f, ast.Attribute) and f.attr in ("search", "match", "fullmatch") and \
                any(self._texty(a) for a in node.args):
            self.hits.append(node.lineno)
        self.generic_visit(node)


def measure(root: pathlib.Path = ROOT) -> dict:
    functions, modules, matches = [], [], []
    sources = {p: p.read_text() for p in _files(root)}
    trees = {p: ast.parse(src) for p, src in sources.items()}
    _Finder.raised = _raised_texts(trees.values())
    for p, src in sources.items():
        tree = trees[p]
        rel = str(p.relative_to(root))
        modules.append((len(src.splitlines()), rel))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
        finder = _Finder()
        finder.visit(tree)
        matches += [f"{rel}:{n}" for n in sorted(set(finder.hits))]
    functions.sort(reverse=True)
    modules.sort(reverse=True)
    return {"longest_functions": functions[:5], "largest_modules": modules[:5], "error_text_matches": matches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--root", default=str(ROOT), help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    m = measure(pathlib.Path(args.root))
    if args.json:
        print(json.dumps(m, indent=1))
        return
    print("longest functions (lines):")
    for n, where in m["longest_functions"]:
        print(f"  {n:5d}  {where}")
    print("largest modules (lines):")
    for n, where in m["largest_modules"]:
        print(f"  {n:5d}  {where}")
    print(f"places matching error text: {len(m['error_text_matches'])}")
    for where in m["error_text_matches"]:
        print(f"  {where}")


if __name__ == "__main__":
    main()
