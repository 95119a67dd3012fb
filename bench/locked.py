#!/usr/bin/env python3
"""Locked instructions a request, from a callgrind file of bench/instructions.sh (LOCKED=1).

    bench/locked.py CALLGRIND_FILE BINARY REQUESTS [SITES]

A locked instruction (x86's `lock` prefix, and `xchg` with memory, which is locked without it) is
how an atomic read-modify-write runs: a reference count taken or dropped (`Arc`, `Bytes`, a
task's waker), a lock taken or let go, a shared counter moved. One costs tens of cycles however
few instructions it is, so two builds that run the same number of instructions can differ in
time by their locked ones. This counts how often BINARY's own locked instructions ran (the C
library's and the kernel's are not counted) and, with SITES, names the SITES most run: for each instruction the innermost
frame of its inlined ones (from the binary's debug information) that is not the atomic's own
plumbing, else the function it is in. That is often a helper (a `Bytes` dropped, a lock's guard),
not the caller who asked: callers are not in an instruction's inlined frames.

The callgrind file must be made with --dump-instr=yes (a count for each instruction's address).
"""
import collections
import re
import subprocess
import sys

# Frames that carry out an atomic operation rather than ask for one: skipped when naming a site.
PLUMBING = (
    "core::sync::atomic", "<core::sync::atomic", "alloc::sync", "<alloc::sync",
    "core::ptr::drop_in_place<alloc::sync", "tokio::loom", "<std::sys::sync", "std::sync::poison",
    "<std::sync::poison", "core::ptr::drop_in_place<std::sync", "parking_lot::", "<parking_lot::",
    "lock_api::", "<lock_api::", "core::ptr::drop_in_place<lock_api", "core::mem::drop",
    "bytes::bytes::shared", "bytes::bytes::release_shared", "bytes::bytes::shallow_clone",
    "<bytes::bytes::Bytes as core::clone", "<bytes::bytes::Bytes as core::ops::drop",
    "tokio::runtime::task::state::", "prometheus::atomic64", "<prometheus::atomic64",
)


def counts_by_address(path, binary_name):
    """Instructions run at each address of the object named binary_name (self cost only)."""
    names = {}
    counts = collections.Counter()
    obj = None
    address = 0
    after_calls = False
    # A cost line is its positions (the instruction's address first), then its events in the
    # order of the `events:` line, trailing zeros left out.
    n_positions = 1
    ir_column = None
    with open(path) as f:
        for line in f:
            if line.startswith("positions:"):
                n_positions = len(line.split()) - 1
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                if "Ir" not in events:
                    sys.exit(f"{path}: no Ir event")
                ir_column = n_positions + events.index("Ir")
                continue
            if line[0] in "+-*0123456789":
                fields = line.split()
                tok = fields[0]
                if tok == "*":
                    pass
                elif tok[0] == "+":
                    address += int(tok[1:], 0)
                elif tok[0] == "-":
                    address -= int(tok[1:], 0)
                else:
                    address = int(tok, 0)
                # The line after `calls=` is the call's inclusive cost, not this instruction's.
                if after_calls:
                    after_calls = False
                elif obj == binary_name and ir_column is not None and len(fields) > ir_column:
                    counts[address] += int(fields[ir_column])
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key == "calls":
                after_calls = True
            elif key in ("ob", "cob"):
                # An object's name is given once, on whichever of the two lines names it first.
                m = re.match(r"\((\d+)\)(?: (.*))?", value)
                name = value
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), "")
                if key == "ob":
                    obj = name.rsplit("/", 1)[-1]
    return counts


def locked_addresses(binary):
    """The addresses of the binary's locked instructions, as the file has them (callgrind writes
    an object's addresses with its load offset taken off, position-independent or not)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    locked = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(lock .*|xchg\s+\S*\(.*)$", line)
        if m:
            locked[int(m.group(1), 16)] = m.group(2).split()[0:2]
    return locked


def sites(binary, addresses):
    """For each address, the innermost frame that is not plumbing, else the function the
    instruction is in (the outermost frame)."""
    if not addresses:
        return {}
    out = subprocess.run(["addr2line", "-e", binary, "-i", "-f", "-C", "-a"]
                         + [hex(a) for a in addresses], capture_output=True, text=True,
                         check=True).stdout
    named = {}
    for block in re.split(r"\n(?=0x[0-9a-f]+\n)", out.strip()):
        lines = block.splitlines()
        frames = [lines[i] for i in range(1, len(lines), 2)]
        asked = [f for f in frames if not f.startswith(PLUMBING)]
        named[int(lines[0], 16)] = asked[0] if asked else (frames or ["?"])[-1]
    return named


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    path, binary, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    counts = counts_by_address(path, binary.rsplit("/", 1)[-1])
    if not counts:
        sys.exit(f"{path}: no instruction of {binary} counted (made without --dump-instr=yes?)")
    locked = locked_addresses(binary)
    run = {a: n for a, n in counts.items() if a in locked}
    print(f"{sum(run.values()) / requests:.1f}")
    if top:
        by_site = collections.Counter()
        named = sites(binary, [a for a, n in run.items() if n / requests >= 0.05])
        for a, n in run.items():
            by_site[named.get(a, "(each below 0.05 a request)")] += n
        for site, n in by_site.most_common(top):
            print(f"  {n / requests:6.2f}  {site[:150]}")


if __name__ == "__main__":
    main()
