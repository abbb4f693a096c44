#!/usr/bin/env python
"""Extract onnx-tensorrt's operator support matrix (docs/operators.md of
github.com/onnx/onnx-tensorrt) as facts for tests/test_trt_graphs.py: per operator whether
it is supported, the data types it takes, which inputs must be build-time constants, and
the Resize modes it accepts; plus the opset range. The prose of the document is not kept.

    # from a git directory (a ref per TensorRT version):
    python tests/data/tensorrt/extract_onnx_tensorrt_ops.py --git_dir /path/onnx-tensorrt/.git \
        --ref 96e781103cfc4adf4a6bb557e94bac8e693f6f4c --label 10.1 --out tests/data/tensorrt/onnx_tensorrt_ops.json
    # or from a copy of the file (--commit records where it came from):
    python tests/data/tensorrt/extract_onnx_tensorrt_ops.py --file operators.md \
        --commit 7c51a63a719180eb5160c874c111746f3fb46a6b --label 11.1 --out tests/data/tensorrt/onnx_tensorrt_ops.json

The output is merged into an existing file, one entry per --label.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

# The document's type names, as ONNX TensorProto element type names.
TYPE_NAMES = {"FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64",
              "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "FP4": "FLOAT4E2M1",
              "INT4": "INT4", "DOUBLE": "DOUBLE",
              "INF64": "INT64"}  # a typo in the 10.x table (ConstantOfShape)
CONSTANT = (r"must be (?:an initializer|initializers|a constant tensor|a build-time constant|"
            r"resolvable to a constant)")
CONSTANT_INPUTS = re.compile(r"((?:`\w+`(?:,\s*|\s+and\s+)?)+)\s*(?:inputs?\s+)?" + CONSTANT)
BACKTICKED = re.compile(r"`(\w+)`")


def parse(text: str) -> dict:
    opsets = re.search(r"opset (\d+) to opset (\d+)", text)
    ops = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"[A-Z]\w*", cells[0]) or not cells[1].startswith(("Y", "N")):
            continue
        name, supported = cells[0], cells[1].startswith("Y")
        types = [TYPE_NAMES[t.strip()] for t in (cells[2] if len(cells) > 2 and supported else "").split(",")
                 if t.strip()]
        notes = " ".join(cells[3:])
        entry = {"supported": supported, "types": types}
        constant = [n for group in CONSTANT_INPUTS.finditer(notes) for n in BACKTICKED.findall(group.group(1))]
        if constant:
            entry["constant_inputs"] = constant
        if name == "Resize":
            for key, label in (("modes", "resize modes"), ("coordinate_transformation_modes", "transformation modes"),
                               ("nearest_modes", "nearest modes")):
                m = re.search(label + r":\s*([^<.]*(?:\.[^<]*?)?)(?:<br|$)", notes)
                entry[key] = BACKTICKED.findall(m.group(1)) if m else []
            entry["antialias"] = "Antialiasing is not supported" not in notes
        ops[name] = entry
    if not ops:
        raise SystemExit("no operator table found")
    return {"opsets": [int(opsets.group(1)), int(opsets.group(2))] if opsets else None, "ops": ops}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--git_dir", type=Path, help="an onnx-tensorrt git directory (with --ref)")
    p.add_argument("--ref", help="commit, branch or tag whose docs/operators.md to read")
    p.add_argument("--file", type=Path, help="a copy of docs/operators.md (with --commit)")
    p.add_argument("--commit", help="the onnx-tensorrt commit --file comes from")
    p.add_argument("--label", required=True, help="the TensorRT version this parser ships with, e.g. 10.1")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.git_dir and args.ref:
        text = subprocess.run(["git", f"--git-dir={args.git_dir}", "show", f"{args.ref}:docs/operators.md"],
                              capture_output=True, text=True, check=True).stdout
        commit = subprocess.run(["git", f"--git-dir={args.git_dir}", "rev-parse", f"{args.ref}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    elif args.file and args.commit:
        text, commit = args.file.read_text(), args.commit
    else:
        p.error("give --git_dir with --ref, or --file with --commit")
    table = json.loads(args.out.read_text()) if args.out.is_file() else {"versions": {}}
    table["source"] = ("github.com/onnx/onnx-tensorrt docs/operators.md (the parser's own support matrix); "
                       "made by tests/data/tensorrt/extract_onnx_tensorrt_ops.py")
    table["versions"][args.label] = {"commit": commit, **parse(text)}
    table["versions"] = dict(sorted(table["versions"].items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))
    lines = ["{", f' "source": {json.dumps(table["source"])},', ' "versions": {']
    for i, (label, version) in enumerate(table["versions"].items()):
        lines.append(f'  {json.dumps(label)}: {{"commit": {json.dumps(version["commit"])}, '
                     f'"opsets": {json.dumps(version["opsets"])}, "ops": {{')
        ops = list(version["ops"].items())
        lines += [f'   {json.dumps(op)}: {json.dumps(entry)}' + ("," if j < len(ops) - 1 else "")
                  for j, (op, entry) in enumerate(ops)]
        lines.append("  }}" + ("," if i < len(table["versions"]) - 1 else ""))
    lines += [" }", "}"]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{args.label}: {len(table['versions'][args.label]['ops'])} operators from {commit}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
