#!/usr/bin/env python3
"""Keeps the C++ in the documentation honest.

  snippets.py extract GUIDE.md OUT.cpp
      Writes every ```cpp block of GUIDE.md into one translation unit, each block in a namespace
      of its own (snippet_1, snippet_2, ...) and its #include lines hoisted to the top, so that
      the build compiles the guide's code against the real headers.

  snippets.py check DOC.md FILE...
      Checks that every ```cpp and ```cmake block of DOC.md is an excerpt of one of the FILEs: a
      block's lines appear there verbatim and in order, where a line that is only "// ..." (or
      "# ..." in CMake) stands for lines left out. Exits 1 and names the block otherwise.
"""
import re
import sys

FENCE = re.compile(r"^```(\w+)\s*$")


def blocks(path, languages):
    """Yields (first line number, language, lines) of the fenced blocks in `languages`."""
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if m.group(1) in languages:
            yield start + 1, m.group(1), lines[start:j]
        i = j + 1


def extract(guide, out):
    includes = []
    bodies = []
    for n, (line, _, code) in enumerate(blocks(guide, {"cpp"}), start=1):
        body = []
        for text in code:
            if text.startswith("#include"):
                if text not in includes:
                    includes.append(text)
            else:
                body.append(text)
        bodies.append(f"// {guide}:{line}\nnamespace snippet_{n} {{\n" + "\n".join(body) + f"\n}}  // namespace snippet_{n}\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"// Generated from {guide} by tests/docs/snippets.py: do not edit.\n")
        f.write("\n".join(includes) + "\n\n")
        f.write("\n".join(bodies))


def is_elision(text):
    return text.strip() in ("// ...", "# ...")


def is_excerpt(code, target):
    """True if the segments of `code` (split at elision lines) appear in `target` in order."""
    segments = [[]]
    for text in code:
        if is_elision(text):
            segments.append([])
        else:
            segments[-1].append(text.rstrip())
    pos = 0
    for segment in segments:
        if not segment:
            continue
        found = -1
        for k in range(pos, len(target) - len(segment) + 1):
            if target[k:k + len(segment)] == segment:
                found = k
                break
        if found < 0:
            return False
        pos = found + len(segment)
    return True


def check(doc, files):
    targets = [[t.rstrip() for t in open(f, encoding="utf-8").read().splitlines()] for f in files]
    failures = 0
    count = 0
    for line, language, code in blocks(doc, {"cpp", "cmake"}):
        count += 1
        if not any(is_excerpt(code, t) for t in targets):
            print(f"{doc}:{line}: this ```{language} block is not an excerpt of {', '.join(files)}")
            failures += 1
    print(f"{doc}: {count} blocks, {failures} not found")
    return 1 if failures or count == 0 else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "extract":
        extract(argv[2], argv[3])
        return 0
    if len(argv) >= 4 and argv[1] == "check":
        return check(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
