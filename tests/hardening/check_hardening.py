"""Checks that the shipped binaries carry Debian's hardening (the top CMakeLists.txt,
ADCSC_HARDEN): full RELRO (a GNU_RELRO segment and BIND_NOW), PIE, the stack protector
(__stack_chk_fail), FORTIFY's checked functions (*_chk), and that our sources were compiled
with stack-clash protection and CET. Reads the ELF files with readelf (binutils), so it needs
no hardening-check (devscripts).

Usage: check_hardening.py BUILD_DIR
"""
import json
import re
import subprocess
import sys
from pathlib import Path

BINARIES = ("adcsc", "adcsc-lb-agent", "adcs-emulator")
COMPILE_FLAGS = ("-fstack-protector-strong", "-fstack-clash-protection", "-fcf-protection", "-D_FORTIFY_SOURCE=2")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def problems_of(binary: Path):
    found = []
    header = readelf("-h", str(binary))
    if not re.search(r"Type:\s+DYN", header):
        found.append("not PIE (ELF type is not DYN)")
    dynamic = readelf("-d", str(binary))
    if "BIND_NOW" not in dynamic and not re.search(r"FLAGS_1.*\bNOW\b", dynamic):
        found.append("no BIND_NOW (link with -Wl,-z,now)")
    if not re.search(r"FLAGS_1.*\bPIE\b", dynamic):
        found.append("no PIE flag in FLAGS_1")
    if "GNU_RELRO" not in readelf("-l", str(binary)):
        found.append("no GNU_RELRO segment (link with -Wl,-z,relro)")
    symbols = readelf("--dyn-syms", str(binary))
    if "__stack_chk_fail" not in symbols:
        found.append("no __stack_chk_fail (compile with -fstack-protector-strong)")
    if not re.search(r"\b__\w+_chk\b", symbols.replace("__stack_chk_fail", "")):
        found.append("no FORTIFY *_chk function (compile with -D_FORTIFY_SOURCE=2 and optimization)")
    return found


def main():
    build = Path(sys.argv[1])
    failures = []
    for name in BINARIES:
        binary = build / "bin" / name
        if not binary.exists():
            failures.append(f"{binary}: missing (build it first)")
            continue
        problems = problems_of(binary)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        failures += [f"{name}: {p}" for p in problems]
    commands = json.loads((build / "compile_commands.json").read_text())
    ours = [c for c in commands if "/node/" in c["file"] or "/lb-agent/" in c["file"]]
    for flag in COMPILE_FLAGS:
        missing = [c["file"] for c in ours if flag not in c.get("command", " ".join(c.get("arguments", [])))]
        if missing:
            failures.append(f"{flag} missing when compiling {len(missing)} files, e.g. {missing[0]}")
    if not ours:
        failures.append("compile_commands.json lists none of our sources")
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
