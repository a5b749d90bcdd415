#!/usr/bin/env python3
"""Fails the build when a component includes a header of a component it does not declare.

Each library of the project is declared with adcsc_component() in CMake, naming its folder
and the components it depends on; CMake writes that table to a file (one line per
component: name, folder, the components it may use) and runs this check as part of every
build. An include of "<folder>/..." belongs to the component whose folder is the longest
prefix; includes of generated protobuf headers ("adcsc/...") belong to `proto`; anything
else (absl, nlohmann, system headers) is not ours and is not checked.

Usage: check_layers.py LAYERS_FILE SOURCE_ROOT
The declared dependencies must also form no cycle.
Exit codes: 0 every include is allowed, 1 some are not (listed), 2 usage error.
"""
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    layers_file, root = Path(argv[1]), Path(argv[2])
    components = {}  # name -> (folder, allowed names)
    for line in layers_file.read_text().splitlines():
        if not line.strip():
            continue
        name, folder, deps = line.split("|")
        components[name] = (folder.strip("/"), {d for d in deps.split(",") if d})
    by_folder = sorted(((f, n) for n, (f, _) in components.items()), key=lambda x: -len(x[0]))

    def owner(path):
        if path.startswith("adcsc/") and "proto" in components:
            return "proto"
        for folder, name in by_folder:
            if path == folder or path.startswith(folder + "/"):
                return name
        return None

    problems = []
    # The declared graph itself must have no cycle: dependencies point one way.
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = path[path.index(name):] + [name]
            problems.append("declared dependencies form a cycle: " + " -> ".join(cycle))
            return
        state[name] = "open"
        for dep in sorted(components.get(name, ("", set()))[1]):
            visit(dep, path + [name])
        state[name] = "done"
    for name in sorted(components):
        visit(name, [])

    for name, (folder, allowed) in sorted(components.items()):
        base = root / folder
        if name == "proto" or not base.is_dir():
            continue
        for src in sorted(base.rglob("*")):
            if src.suffix not in (".h", ".cc") or owner(str(src.relative_to(root))) != name:
                continue  # a file in a sub-folder that is a component of its own
            for number, text in enumerate(src.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(text)
                if not m:
                    continue
                target = owner(m.group(1))
                if target is None or target == name or target in allowed:
                    continue
                problems.append(f"{src.relative_to(root)}:{number}: {name} includes \"{m.group(1)}\" of component "
                                f"{target}, which adcsc_component({name} ...) does not declare in COMPONENTS")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check_layers: {len(problems)} problem(s) with the declared dependencies "
              "(declare the dependency if it is meant, or move the code to the right component)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
