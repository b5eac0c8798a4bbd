"""The package's layout rules (docs/architecture.md), checked on the installed sources:
inference never imports training, every network of the method is in jeancore/models/, and
one module writes and reads checkpoints."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import jeancore

PKG = Path(jeancore.__file__).resolve().parent

# the `jean` command line (the package cli/) runs the training commands, so it may import
# jeancore.train
TRAIN_IMPORT_ALLOWED = ("cli/",)
# networks that are not the method's but a metric's: LPIPS (metrics/face.py), SyncNet
# (metrics/syncnet.py); modules that hold one kernel's tensors, not networks: the hash grid's
# embeddings (ops/encoding.py HashGrid), the occupancy grid's bit field (ops/marching.py)
MODULE_OUTSIDE_MODELS_ALLOWED = {"metrics/face.py", "metrics/syncnet.py", "ops/encoding.py",
                                 "ops/marching.py"}


def _sources():
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).as_posix()
        parts = ("jeancore",) + f.relative_to(PKG).with_suffix("").parts
        pkg = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
        yield rel, pkg, ast.parse(f.read_text())


def _is_module(name: str) -> bool:
    p = PKG.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imported(tree, pkg):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), pkg) \
                if node.level else node.module
            yield node.lineno, base, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


def test_inference_never_imports_training():
    bad = []
    for rel, pkg, tree in _sources():
        if rel.startswith(("train/",) + TRAIN_IMPORT_ALLOWED):
            continue
        for line, base, names in _imported(tree, pkg):
            if base == "jeancore.train" or base.startswith("jeancore.train.") or (
                    base == "jeancore" and "train" in names):
                bad.append(f"{rel}:{line} imports {base}")
        # names of training modules for importlib (lazy imports) count too
        bad += [f"{rel}:{n.lineno} names {n.value!r}" for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and re.fullmatch(r"jeancore\.train(\.\w+)*", n.value) and _is_module(n.value)]
    assert not bad, bad


def test_every_network_is_in_models():
    found = []
    for rel, pkg, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    ast.unparse(b) in ("nn.Module", "torch.nn.Module", "Module")
                    for b in node.bases):
                found.append((rel, node.name))
    outside = [f"{rel}: {name}" for rel, name in found
               if not rel.startswith("models/") and rel not in MODULE_OUTSIDE_MODELS_ALLOWED]
    assert not outside, outside
    names = {name for rel, name in found if rel.startswith("models/")}
    assert {"NerfMLP", "Backbone", "GridField", "AudioConditioner", "AudioEncoder",
            "LandmarkAutoencoder", "ExpressionTransformer", "MouthSwapStep"} <= names


def test_one_module_writes_and_reads_checkpoints():
    saves, loads = [], []
    for rel, _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name == "torch.save":
                    saves.append(rel)
                elif name == "torch.load":
                    loads.append(rel)
    assert set(saves) == {"checkpoints.py"}, saves
    # metrics/face.py reads user-supplied third-party weights (LPIPS), not jeancore files
    assert set(loads) == {"checkpoints.py", "metrics/face.py"}, loads
