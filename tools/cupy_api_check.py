"""Every ``xp.<name>`` and ``cupy.<name>`` the package and its benchmarks call exists in cupy, and
takes the keywords used: proof without a GPU that the CuPy path names real functions.

    pip install cupy-cuda12x            # cupy imports without a GPU or driver
    python tools/cupy_api_check.py [paths ...]     (default: minigan/ and benchmarks/)

What it reads (an AST walk; nothing is run): calls and references whose object is ``xp``,
``self.xp``, ``cupy``, ``cp``, ``get_xp(...)`` or ``_load_cupy()``, e.g. ``xp.matmul(a, b, out=c)``,
``cupy.cuda.Device().synchronize()`` (the chain is resolved as far as it names attributes of
modules and classes).  Each must resolve in the installed cupy; for a call with keywords, a cupy
ufunc accepts ``out``, ``dtype`` and ``casting``, and any other function must have those keywords
in ``inspect.signature`` (or take ``**kwargs``).  A function whose signature cannot be read (some
compiled ones) is listed as unverified, not failed.  ``xp`` is numpy on the CPU: a name that
exists in numpy only would break the GPU path, which is what this catches (it caught
``cupy.cuda.get_current_device``, which CuPy 14 does not have, in the benchmarks).
Exit status 0 when every name resolves and every keyword is accepted, 1 otherwise, 2 without cupy.
"""
import argparse
import ast
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XP_NAMES = {"xp", "cupy", "cp"}
XP_CALLS = {"get_xp", "_load_cupy"}
UFUNC_KEYWORDS = {"out", "dtype", "casting"}


def _chain(node):
    """(root kind, [attribute names]) for an Attribute chain rooted at an xp-like object, else None.
    The chain stops at the first call inside it (``cupy.cuda.Device().use`` -> cuda, Device)."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    names.reverse()
    if isinstance(node, ast.Name) and node.id in XP_NAMES:
        return names
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name) and f.id in XP_CALLS:
            return names
        inner = _chain(f) if isinstance(f, ast.Attribute) else None
        if inner is not None:                        # cupy.cuda.Device().synchronize: check cuda.Device
            return inner
    return None


def _self_xp(node):
    """self.xp.<names> -> names."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    names.reverse()
    if isinstance(node, ast.Name) and node.id == "self" and names[:1] == ["xp"]:
        return names[1:]
    return None


def uses(paths):
    """[(file, line, [names], keywords or None)] for every xp-rooted reference; keywords is the list
    of keyword names when the reference is called, else None."""
    found = {}
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            tree = ast.parse(f.read_text(), str(f))
            called = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    called[id(node.func)] = [k.arg for k in node.keywords if k.arg is not None]
            seen_inner = set()
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute) or id(node) in seen_inner:
                    continue
                inner = node.value
                while isinstance(inner, ast.Attribute):      # check each chain once, at its outermost node
                    seen_inner.add(id(inner))
                    inner = inner.value
                names = _self_xp(node)
                if names is None:
                    names = _chain(node)
                if not names:
                    continue
                key = (f, node.lineno, tuple(names))
                keywords = called.get(id(node))
                if found.get(key) is None:      # (a chain reached twice: once inside a call, once alone)
                    found[key] = keywords
    return [(f, line, list(names), keywords) for (f, line, names), keywords in found.items()]


def resolve(cupy, names):
    """getattr along names -> (object, None) or (None, the first name missing)."""
    obj = cupy
    for i, name in enumerate(names):
        if not hasattr(obj, name):
            return None, ".".join(names[:i + 1])
        obj = getattr(obj, name)
    return obj, None


def check_keywords(cupy, obj, keywords):
    """-> (verdict, message): 'ok', 'unverified' or 'bad'."""
    if not keywords:
        return "ok", ""
    if isinstance(obj, cupy.ufunc):
        bad = [k for k in keywords if k not in UFUNC_KEYWORDS]
        return ("bad", f"a cupy ufunc does not take {bad}") if bad else ("ok", "")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "unverified", "signature not readable"
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return "ok", ""
    bad = [k for k in keywords if k not in params]
    return ("bad", f"takes no keyword {bad} (signature {sig})") if bad else ("ok", "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, default=[ROOT / "minigan", ROOT / "benchmarks"])
    args = ap.parse_args(argv)
    try:
        import cupy
    except ImportError:
        print("cupy_api_check: cupy is not installed (pip install cupy-cuda12x)", file=sys.stderr)
        return 2
    failures, unverified, checked = [], [], set()
    for f, line, names, keywords in uses(args.paths):
        where = f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}:{line}"
        obj, missing = resolve(cupy, names)
        if missing is not None:
            failures.append(f"{where}: cupy has no {missing}")
            continue
        verdict, msg = check_keywords(cupy, obj, keywords)
        checked.add(".".join(names))
        if verdict == "bad":
            failures.append(f"{where}: {'.'.join(names)} {msg}")
        elif verdict == "unverified":
            unverified.append(f"{where}: {'.'.join(names)}({', '.join(k + '=' for k in keywords)}): {msg}")
    print(f"cupy {cupy.__version__}: {len(checked)} distinct names checked")
    for u in sorted(set(unverified)):
        print("unverified", u)
    for x in failures:
        print("FAILED", x)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
