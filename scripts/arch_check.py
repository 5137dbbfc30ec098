#!/usr/bin/env python3
"""Architecture checks run by .ci/run.

1. No import cycle between the modules of any crate: a module (a file under src/) depends
   on another when it names it through `crate::NAME`, `super::NAME` (from a sibling) or
   a `use crate::{NAME, ...}` group. Test-only code (`#[cfg(test)]` modules at the end of
   a file) is ignored.
2. No function in autoscaler-core longer than MAX_FN_LINES lines (signature to closing
   brace, tests excluded).

Prints every finding and exits 1 when there is one.
"""
import re
import sys
from pathlib import Path

MAX_FN_LINES = 120
ROOT = Path(__file__).resolve().parent.parent
CRATES = ["autoscaler-core", "autoscaler-aws", "autoscaler-bin", "simulator", "benches"]


def strip_tests(text):
    """Drops a trailing `#[cfg(test)] mod ... { ... }` and comments."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\nmod \w+", text, re.M)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def modules(src):
    """Top-level modules of a crate: file stem (or dir name for mod.rs) -> text."""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src)
        if rel.parts[0] in ("bin",) or rel.name in ("lib.rs", "main.rs"):
            continue
        name = rel.parts[0][:-3] if len(rel.parts) == 1 else rel.parts[0]
        out.setdefault(name, "")
        out[name] += strip_tests(f.read_text())
    return out


def deps(name, text, names):
    found = set()
    for m in re.finditer(r"\bcrate::(\w+)", text):
        found.add(m.group(1))
    for m in re.finditer(r"\bsuper::(\w+)", text):
        found.add(m.group(1))
    for m in re.finditer(r"use crate::\{([^}]*)\}", text, re.S):
        for part in re.split(r"[,\s]+", m.group(1)):
            found.add(part.split("::")[0])
    return {d for d in found if d in names and d != name}


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(src):
    found = []
    for f in sorted(src.rglob("*.rs")):
        lines = strip_tests(f.read_text()).split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?fn\s+(\w+)", lines[i])
            if not m:
                i += 1
                continue
            indent, name = m.group(1), m.group(5)
            j = i
            while j < len(lines) and not re.match(r"^" + indent + r"\}\s*$", lines[j]):
                if lines[j].rstrip().endswith(";") and j == i:
                    break
                j += 1
            length = j - i + 1
            if length > MAX_FN_LINES:
                found.append((length, f"{f.relative_to(ROOT)}:{i + 1} fn {name}"))
            i += 1
    return found


def main():
    problems = []
    for crate in CRATES:
        src = ROOT / crate / "src"
        if not src.is_dir():
            continue
        mods = modules(src)
        graph = {n: deps(n, t, mods.keys()) for n, t in mods.items()}
        for comp in cycles(graph):
            problems.append(f"{crate}: import cycle between modules {' <-> '.join(comp)}")
    for length, where in sorted(long_functions(ROOT / "autoscaler-core" / "src"), reverse=True):
        problems.append(f"{where}: {length} lines (limit {MAX_FN_LINES}); split it into phases")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} architecture problem(s)")
        return 1
    print("architecture: no module cycles, no autoscaler-core function over", MAX_FN_LINES, "lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
