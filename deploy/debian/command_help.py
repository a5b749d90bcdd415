#!/usr/bin/env python3
"""Writes the --help text of every command and subcommand to OUT_DIR/<command>.txt, as the
binaries print it: adcsc.txt, adcsc-node.txt, adcsc-pki-init.txt, ..., adcsc-lb-agent.txt.
Subcommands are found by walking the "Subcommands:" section CLI11 prints.

Usage: command_help.py ADCSC ADCSC_LB_AGENT OUT_DIR"""
import re
import subprocess
import sys
from pathlib import Path

SUBCOMMAND = re.compile(r"^  ([a-z][a-z0-9-]*)(\s{2,}|$)")


def help_text(binary, name, words):
    # argv[0] is the installed name, not the build path (CLI11 prints it in "Usage:").
    out = subprocess.run([name, *words, "--help"], executable=binary, capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        sys.exit(f"command_help.py: `{' '.join([binary, *words, '--help'])}` failed ({out.returncode}): {out.stderr}")
    return out.stdout


def subcommands(text):
    lines = text.splitlines()
    if "Subcommands:" not in lines:
        return []
    return [m.group(1) for line in lines[lines.index("Subcommands:") + 1:] if (m := SUBCOMMAND.match(line))]


def write(binary, name, words, out_dir):
    text = help_text(binary, name, words)
    (out_dir / ("-".join([name, *words]) + ".txt")).write_text(text)
    for sub in subcommands(text):
        write(binary, name, [*words, sub], out_dir)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    adcsc, agent, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.txt"):
        old.unlink()
    write(adcsc, "adcsc", [], out_dir)
    write(agent, "adcsc-lb-agent", [], out_dir)


if __name__ == "__main__":
    main()
