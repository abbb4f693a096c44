#!/usr/bin/env python
"""Extract the Python-visible TensorRT API (classes with their methods and properties,
enums with their members' integer values, module attributes) from TensorRT's pybind11
binding sources, for tests/test_trt_api_surface.py.

Reads a TensorRT source tree (github.com/NVIDIA/TensorRT): either a checkout, or a git
directory plus a ref (branch, tag or commit). Only these files are read:
  python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp, pyGraph.cpp, python/src/parsers/pyOnnx.cpp
  (the bindings) and include/*.h (the C++ enums, for the members' values, and the version).
Nothing of theirs is copied: the output is a table of names and numbers.

    python tests/data/tensorrt/extract_tensorrt_api.py --git_dir /path/TensorRT/.git \
        --ref release/10.1 --ref release/10.13 --out tests/data/tensorrt/tensorrt_api.json

The parser is a small scanner for the binding style these files use: `py::class_<T, Bases...>
(scope, "Name", ...)` and `py::enum_<E>(scope, "Name", ...)` statements followed by chained
`.def("x"`, `.def_property("x"`, `.def_readwrite("x"`, `.value("X", E::kX)`, `.export_values()`;
class bindings kept in a variable (`py::class_<T> var{m, "Name"}`, later `var.def(...)`),
`m.def("f"`, and `m.attr("x") = ...`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

BINDING_FILES = (
    "python/src/infer/pyCore.cpp",
    "python/src/infer/pyFoundationalTypes.cpp",
    "python/src/infer/pyGraph.cpp",
    "python/src/parsers/pyOnnx.cpp",
)
DEF_CALLS = {"def", "def_property", "def_property_readonly", "def_readwrite", "def_readonly",
             "def_static", "def_property_static", "def_property_readonly_static"}


class Source:
    """Files of one TensorRT version: a checkout, or `git show REF:path` in a git dir."""

    def __init__(self, root: Path, ref: str | None):
        self.root, self.ref = root, ref

    def read(self, path: str) -> str | None:
        if self.ref is None:
            file = self.root / path
            return file.read_text(errors="replace") if file.is_file() else None
        done = subprocess.run(["git", f"--git-dir={self.root}", "show", f"{self.ref}:{path}"],
                              capture_output=True, text=True, errors="replace")
        return done.stdout if done.returncode == 0 else None

    def headers(self) -> list[str]:
        if self.ref is None:
            return sorted(str(p.relative_to(self.root)) for p in (self.root / "include").glob("*.h"))
        done = subprocess.run(["git", f"--git-dir={self.root}", "ls-tree", "--name-only", f"{self.ref}:include"],
                              capture_output=True, text=True, check=True)
        return sorted(f"include/{name}" for name in done.stdout.split() if name.endswith(".h"))

    def commit(self) -> str | None:
        if self.ref is None:
            done = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"], capture_output=True, text=True)
        else:
            done = subprocess.run(["git", f"--git-dir={self.root}", "rev-parse", f"{self.ref}^{{commit}}"],
                                  capture_output=True, text=True)
        return done.stdout.strip() or None


# -- C++ scanning ---------------------------------------------------------------------------


def strip_comments(text: str) -> str:
    """Comments out, string and character literals kept (raw strings included)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(text[i:j])
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def statements(text: str) -> list[str]:
    """Split at `;` outside parentheses, brackets and string literals."""
    parts, depth, start, i, n = [], 0, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth = max(0, depth - 1)
        elif c == ";" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def chained_calls(stmt: str, start: int) -> list[tuple[str, str]]:
    """(method, argument text) of every `.name(args)` at nesting depth 0 from `start`."""
    calls, i, n = [], start, len(stmt)
    while i < n:
        m = re.compile(r"\.\s*(\w+)\s*\(").match(stmt, i)
        if m is None:
            c = stmt[i]
            if c in "([{":
                i = _skip_group(stmt, i)
            elif c in "\"'":
                i = _skip_string(stmt, i)
            else:
                i += 1
            continue
        open_at = m.end() - 1
        close_at = _skip_group(stmt, open_at)
        calls.append((m.group(1), stmt[open_at + 1:close_at - 1]))
        i = close_at
    return calls


def _skip_string(text, i):
    q, j = text[i], i + 1
    while j < len(text) and text[j] != q:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _skip_group(text, i):
    """Index after the bracket group opening at i."""
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    openers = "([{<" if text[i] == "<" else "([{"  # angle brackets nest only in template lists
    stack, j = [pairs[text[i]]], i + 1
    while j < len(text) and stack:
        c = text[j]
        if c in "\"'":
            j = _skip_string(text, j)
            continue
        if c in openers:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
        j += 1
    return j


def _template_args(text: str) -> list[str]:
    """Top-level comma-separated pieces of a template argument list."""
    args, depth, cur = [], 0, []
    for c in text:
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    args.append("".join(cur).strip())
    return args


HEAD = re.compile(r'py::(class_|enum_)\s*<')
FIRST_STRING = re.compile(r'^\s*"([^"]+)"')


def parse_bindings(texts: list[str]) -> dict:
    classes: dict[str, dict] = {}  # python name -> {"cpp": type, "bases": [cpp], "attrs": set}
    enums: dict[str, dict] = {}  # qualified python name -> {"cpp": type, "members": {NAME: cpp enumerator}}
    module: set[str] = set()
    var_to_class: dict[str, str] = {}
    cpp_to_class: dict[str, str] = {}

    for text in texts:
        for stmt in statements(strip_comments(text)):
            head = HEAD.search(stmt)
            if head is not None:
                lt = head.end() - 1
                gt = _skip_group(stmt, lt)
                targs = _template_args(stmt[lt + 1:gt - 1])
                rest = stmt[gt:]
                m = re.match(r'\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*"(\w+)"', rest)
                if m is None:
                    continue
                var, scope, name = m.groups()
                # the chained calls start after the constructor's argument group
                open_at = gt + re.match(r'\s*(\w+)?\s*', rest).end()
                after = _skip_group(stmt, open_at)
                owner = var_to_class.get(scope)
                if head.group(1) == "class_":
                    cpp = targs[0]
                    entry = classes.setdefault(name, {"cpp": cpp, "bases": targs[1:], "attrs": set(), "enums": []})
                    cpp_to_class[cpp] = name
                    if var:
                        var_to_class[var] = name
                    _add_class_calls(entry, chained_calls(stmt, after))
                else:
                    qual = f"{owner}.{name}" if owner else name
                    members, exported = {}, False
                    for method, args in chained_calls(stmt, after):
                        if method == "value":
                            vm = re.match(r'\s*"(\w+)"\s*,\s*([\w:]+)', args)
                            if vm:
                                members[vm.group(1)] = vm.group(2)
                        elif method == "export_values":
                            exported = True
                    enums[qual] = {"cpp": targs[0], "members": members}
                    if owner:
                        classes[owner]["enums"].append(name)
                        if exported:
                            classes[owner]["attrs"].update(members)
                    elif exported:
                        module.update(members)
                continue
            m = re.match(r'\s*(\w+)\s*\.\s*def', stmt)
            if m and m.group(1) in var_to_class:
                _add_class_calls(classes[var_to_class[m.group(1)]], chained_calls(stmt, m.end(1)))
                continue
            for fm in re.finditer(r'\bm\s*\.\s*def\s*\(\s*"(\w+)"', stmt):
                module.add(fm.group(1))
            for am in re.finditer(r'\bm\s*\.\s*attr\s*\(\s*"(\w+)"\s*\)\s*=', stmt):
                module.add(am.group(1))
    # Bases: the template arguments that are bound classes (not holders or trampolines).
    for entry in classes.values():
        entry["bases"] = [cpp_to_class[b] for b in entry["bases"] if b in cpp_to_class]
    return {"classes": classes, "enums": enums, "module": module}


def _add_class_calls(entry, calls):
    for method, args in calls:
        if method in DEF_CALLS:
            m = FIRST_STRING.match(args)
            if m:
                entry["attrs"].add(m.group(1))


# -- C++ enum values ------------------------------------------------------------------------


ENUM_DEF = re.compile(r'\benum\s+(?:class\s+)?(\w+)\s*(?::\s*[\w:]+\s*)?\{([^{}]*)\}')


def parse_enum_values(texts: list[str]) -> dict[str, list[dict[str, int]]]:
    """enum name -> its definitions (enumerator -> value) in the headers; one name may be
    defined in several namespaces (nvinfer1::ErrorCode, nvonnxparser::ErrorCode)."""
    found: dict[str, list[dict[str, int]]] = {}
    for text in texts:
        clean = strip_comments(text)
        for m in ENUM_DEF.finditer(clean):
            values, nxt = {}, 0
            for raw in m.group(2).split(","):
                item = re.sub(r"\bTRT_\w*DEPRECATED\w*\b", "", raw).strip()
                if not item:
                    continue
                im = re.match(r'(\w+)\s*(?:=\s*(.+))?$', item, re.S)
                if im is None:
                    continue
                name, expr = im.groups()
                if expr is not None:
                    value = _eval(expr, values)
                    if value is None:
                        continue
                    nxt = value
                values[name] = nxt
                nxt += 1
            found.setdefault(m.group(1), []).append(values)
    return found


def _eval(expr: str, known: dict[str, int]) -> int | None:
    expr = re.sub(r"\b(\w+::)+", "", expr.strip())
    expr = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr)
    expr = re.sub(r"static_cast<\s*\w+\s*>", "", expr)
    expr = re.sub(r"\b([A-Za-z_]\w*)\b", lambda m: str(known[m.group(1)]) if m.group(1) in known else m.group(0), expr)
    if not re.fullmatch(r"[\d\s()+\-*<>|&~xXa-fA-F]+", expr):
        return None
    try:
        return int(eval(expr, {"__builtins__": {}}))  # digits and operators only (checked above)
    except Exception:
        return None


def version_of(headers: dict[str, str]) -> str | None:
    text = headers.get("include/NvInferVersion.h", "")
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\w+)", text))

    def resolve(key):
        value = defines.get(key)
        while value is not None and not value.isdigit():
            value = defines.get(value)
        return value

    parts = [resolve(f"NV_TENSORRT_{k}") for k in ("MAJOR", "MINOR", "PATCH", "BUILD")]
    return ".".join(parts) if all(parts) else None


def extract(source: Source) -> dict:
    texts = [source.read(f) for f in BINDING_FILES]
    missing = [f for f, t in zip(BINDING_FILES, texts) if t is None]
    if missing:
        raise SystemExit(f"not a TensorRT source tree (missing {', '.join(missing)})")
    headers = {h: source.read(h) or "" for h in source.headers()}
    bound = parse_bindings(texts)
    values = parse_enum_values(list(headers.values()))
    enums = {}
    for qual, enum in bound["enums"].items():
        wanted = {cpp.split("::")[-1] for cpp in enum["members"].values()}
        candidates = values.get(enum["cpp"].split("::")[-1], [])
        table = next((t for t in candidates if wanted <= set(t)), {})  # the definition with every member
        enums[qual] = {name: table.get(cpp.split("::")[-1]) for name, cpp in enum["members"].items()}
    classes = {name: {"bases": entry["bases"], "attrs": sorted(entry["attrs"]), "enums": sorted(entry["enums"])}
               for name, entry in sorted(bound["classes"].items())}
    return {"tensorrt_version": version_of(headers), "commit": source.commit(), "classes": classes,
            "enums": dict(sorted(enums.items())), "module": sorted(bound["module"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", type=Path, help="a TensorRT source checkout (its work tree)")
    p.add_argument("--git_dir", type=Path, help="a TensorRT git directory (with --ref)")
    p.add_argument("--ref", action="append", default=[], help="branch, tag or commit (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="JSON table to write (merged into if it exists)")
    args = p.parse_args(argv)
    sources = [(args.checkout.name, Source(args.checkout, None))] if args.checkout else []
    sources += [(ref, Source(args.git_dir, ref)) for ref in args.ref]
    if not sources:
        p.error("give --checkout or --git_dir with --ref")
    table = json.loads(args.out.read_text()) if args.out.is_file() else {"versions": {}}
    table["source"] = ("github.com/NVIDIA/TensorRT: " + ", ".join(BINDING_FILES) + ", include/*.h; "
                       "made by tests/data/tensorrt/extract_tensorrt_api.py")
    for label, source in sources:
        api = extract(source)
        key = ".".join(api["tensorrt_version"].split(".")[:2])
        api["ref"] = label
        table["versions"][key] = api
        print(f"{label}: TensorRT {api['tensorrt_version']} at {api['commit']}: {len(api['classes'])} classes, "
              f"{len(api['enums'])} enums", file=sys.stderr)
    table["versions"] = dict(sorted(table["versions"].items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))
    args.out.write_text(dumps(table))
    return 0


def dumps(table: dict) -> str:
    """JSON with one line per class, enum and version header (reviewable diffs)."""
    def block(items, indent):
        pad = " " * indent
        return (",\n".join(f"{pad}{json.dumps(k)}: {json.dumps(v)}" for k, v in items.items()))

    out = ["{", f' "source": {json.dumps(table["source"])},', ' "versions": {']
    versions = list(table["versions"].items())
    for i, (key, api) in enumerate(versions):
        head = {k: api[k] for k in ("tensorrt_version", "ref", "commit")}
        out.append(f"  {json.dumps(key)}: {{")
        out.append(block(head, 3) + ",")
        out.append(f'   "module": {json.dumps(api["module"])},')
        out.append('   "classes": {\n' + block(api["classes"], 4) + "\n   },")
        out.append('   "enums": {\n' + block(api["enums"], 4) + "\n   }")
        out.append("  }" + ("," if i < len(versions) - 1 else ""))
    out += [" }", "}"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
