#!/usr/bin/env python3
"""Fails when the top-level modules of a crate's src/ import each other in a cycle.

Every `crate::…`, `super::…` (resolved from the file's own module path) and `use crate::{…}` in
code (comments and string literals are skipped) counts as an edge from the file's top-level module
to the module it names. Prints each cycle with the files that close it and exits 1; prints the
layering (each module and what it imports) and exits 0 when there is none.

    scripts/import-cycles.py [SRC_DIR ...]     (default: src)
"""

import os
import re
import sys
from collections import defaultdict

ROOT_FILES = {"lib.rs", "main.rs"}


def strip_code(text):
    """The text without comments, string and char literals (kept line by line)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 8]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            i = text.find("'", i + 2) + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_path(src, path):
    """The module path of a file: src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]; src/lib.rs -> []."""
    parts = os.path.relpath(path, src).split(os.sep)
    if parts[-1] in ROOT_FILES and len(parts) == 1:
        return []
    last = parts[-1][:-3]
    parts = parts[:-1] + ([] if last == "mod" else [last])
    return parts


def group_heads(code, start):
    """The first path segment of each depth-0 item of the `{…}` group opening at `start`."""
    heads, depth, item = [], 0, ""
    for c in code[start:]:
        if c == "{":
            depth += 1
            if depth == 1:
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and c == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += c
    heads.append(item)
    found = []
    for head in heads:
        match = re.match(r"\s*([a-z_][a-z0-9_]*)", head)
        if match:
            found.append(match.group(1))
    return found


def referenced(code, here):
    """Top-level module names the code refers to, from the module at path `here`."""
    names = set()
    for match in re.finditer(r"\bcrate::(\{|[a-z_][a-z0-9_]*)", code):
        if match.group(1) == "{":
            names.update(group_heads(code, match.start(1)))
        else:
            names.add(match.group(1))
    for match in re.finditer(r"\b((?:super::)+)(\{|[a-z_][a-z0-9_]*)", code):
        ups = match.group(1).count("super::")
        if here[: max(len(here) - ups, 0)]:
            continue  # still inside a top-level module
        if match.group(2) == "{":
            names.update(group_heads(code, match.start(2)))
        else:
            names.add(match.group(2))
    return names


def edges_of(src):
    tops = set()
    for entry in os.listdir(src):
        full = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ROOT_FILES:
            tops.add(entry[:-3])
        elif os.path.isdir(full) and entry != "bin":
            tops.add(entry)
    edges = defaultdict(set)
    for dirpath, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            here = module_path(src, path)
            if not here or here[0] not in tops:
                continue
            with open(path, encoding="utf-8") as f:
                code = strip_code(f.read())
            for target in referenced(code, here):
                if target in tops and target != here[0]:
                    edges[(here[0], target)].add(os.path.relpath(path, src))
    return tops, edges


def cycles(tops, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

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
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(tops):
        if v not in index:
            visit(v)
    return found


def main():
    failed = False
    for src in sys.argv[1:] or ["src"]:
        tops, edges = edges_of(src)
        found = cycles(tops, edges)
        for component in found:
            failed = True
            print(f"{src}: import cycle between top-level modules: {', '.join(component)}")
            for a in component:
                for b in component:
                    if (a, b) in edges:
                        print(f"  {a} -> {b}: {', '.join(sorted(edges[(a, b)]))}")
        if not found:
            print(f"{src}: no import cycle between {len(tops)} top-level modules")
            for module in sorted(tops):
                uses = sorted(b for (a, b) in edges if a == module)
                print(f"  {module}: {', '.join(uses) if uses else '-'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
