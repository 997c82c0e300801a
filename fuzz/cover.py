#!/usr/bin/env python3
"""Picks a small corpus: a greedy cover of the edges a set of inputs reaches.

libFuzzer's merge (`cargo fuzz cmin`) keeps every input that adds an edge
in the order it meets them; a greedy cover keeps fewer. Usage, from fuzz/:

    python3 cover.py target/x86_64-unknown-linux-gnu/release/TARGET IN_DIR OUT_DIR

It runs the target binary once per input (libFuzzer's -merge=1 with a
control file) to learn the edges each reaches, then copies to OUT_DIR the
inputs that cover them all, largest gain first, smallest input on a tie.
"""
import os
import shutil
import subprocess
import sys
import tempfile


def edges(binary, path):
    with tempfile.TemporaryDirectory() as d:
        ctl, out, inp = (os.path.join(d, n) for n in ("ctl", "out", "in"))
        os.mkdir(out)
        os.mkdir(inp)
        shutil.copy(path, inp)
        subprocess.run(
            [binary, "-merge=1", "-use_counters=0", "-use_cmp=0",
             f"-merge_control_file={ctl}", "-rss_limit_mb=1024", out, inp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = set()
        for line in open(ctl).read().split("\n"):
            words = line.split()
            if words and words[0] == "COV":
                found |= set(words[2:])
        return found


def main(binary, src, dst):
    files = sorted(os.path.join(src, f) for f in os.listdir(src))
    cov = {f: edges(binary, f) for f in files}
    chosen, covered = [], set()
    while True:
        best = max(cov, key=lambda f: (len(cov[f] - covered), -os.path.getsize(f)))
        if not cov[best] - covered:
            break
        chosen.append(best)
        covered |= cov[best]
    os.makedirs(dst, exist_ok=True)
    for f in chosen:
        shutil.copy(f, dst)
    print(f"{len(chosen)} of {len(files)} inputs cover all {len(covered)} edges")


if __name__ == "__main__":
    main(*sys.argv[1:4])
