#!/usr/bin/env python3
"""Tallies the stack samples of bench/gpu_stacks.sh: for the busiest thread (the one issuing the
step), the share of samples each function appears in (inclusive) and is on top of (self).

    python3 bench/stacks.py DIR_OF_SAMPLES [--top 40] [--match SUBSTRING]
"""
import argparse, collections, pathlib, re

FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(.+?)(?: \(.*)?$")


def threads(text):
    """{thread header: [function names, innermost first]} of one gdb `thread apply all bt`."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("Thread "):
            cur = out.setdefault(line.split(" (")[0], [])
        elif cur is not None and line.startswith("#"):
            m = FRAME.match(line)
            if m:
                cur.append(short(m.group(1)))
    return out


def short(name):
    """A Rust symbol without its hash and generic arguments, so the same function tallies once."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name.strip())
    depth, out = 0, []
    for ch in name:
        if ch == "<":
            depth += 1
            if depth == 1:
                out.append("<…>")
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--match", default="train_step")
    a = ap.parse_args()
    samples = [threads(p.read_text(errors="replace")) for p in sorted(pathlib.Path(a.dir).glob("*.txt"))]
    stacks = []
    for s in samples:  # the thread inside the training step
        hit = [st for st in s.values() if any(a.match in f for f in st)]
        if hit:
            stacks.append(hit[0])
    n = len(stacks)
    print(f"{n} of {len(samples)} samples have a thread in {a.match!r}")
    incl, top = collections.Counter(), collections.Counter()
    for st in stacks:
        for f in set(st):
            incl[f] += 1
        if st:
            top[st[0]] += 1
    print("\n== inclusive (share of samples a function is on the stack)")
    for f, c in incl.most_common(a.top):
        print(f"{100 * c / n:5.1f}%  {f[:160]}")
    print("\n== self (innermost frame)")
    for f, c in top.most_common(20):
        print(f"{100 * c / n:5.1f}%  {f[:160]}")


if __name__ == "__main__":
    main()
