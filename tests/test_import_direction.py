"""The product does not depend on the tiny world: no module of hunyuan_video outside hunyuan_video/tiny imports
hunyuan_video.tiny, except the CLI inside its tiny-world commands, and importing every product module (and building
the CLI's parser) leaves no hunyuan_video.tiny module loaded."""

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import hunyuan_video

PACKAGE = Path(hunyuan_video.__file__).parent
TINY = "hunyuan_video.tiny"
# The CLI's tiny-world commands: the functions of cli.py that may import hunyuan_video.tiny (lazily, when they run).
TINY_COMMANDS = {"_run_data_synth", "_run_data_eval"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The absolute names an import statement brings in (`from a import b` gives `a` and `a.b`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _tiny_imports(path: Path) -> list[tuple[int, str | None]]:
    """(line, enclosing top-level function or None) of each import of hunyuan_video.tiny in the file at `path`."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for top in tree.body:
        function = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        for node in ast.walk(top):
            names = _imported(node, module, path.name == "__init__.py")
            if any(n == TINY or n.startswith(TINY + ".") for n in names):
                found.append((node.lineno, function))
    return found


def _allowed(path: Path, function: str | None) -> bool:
    if path.parts[-2:] == (PACKAGE.name, "cli.py"):
        return function is not None and (function in TINY_COMMANDS or function.startswith("_run_tiny_"))
    return False


def test_the_static_check_sees_imports():
    samples = {"import hunyuan_video.tiny.synth": 1, "from hunyuan_video.tiny import grow": 1,
               "from hunyuan_video import tiny": 1, "def f():\n    from hunyuan_video.tiny.evaluate import score": 1,
               "from hunyuan_video.tinyish import x\nimport hunyuan_video.models": 0}
    for source, count in samples.items():
        tree = ast.parse(source)
        hits = [n for n in ast.walk(tree) if any(m == TINY or m.startswith(TINY + ".")
                                                  for m in _imported(n, "hunyuan_video.pipeline", False))]
        assert len(hits) == count, source
    # relative: `from .tiny import synth` in hunyuan_video/cli.py, `from ..tiny import grow` in hunyuan_video/train
    relative = ast.parse("from .tiny import synth").body[0]
    assert TINY in _imported(relative, "hunyuan_video.cli", False)
    relative = ast.parse("from ..tiny import grow").body[0]
    assert TINY in _imported(relative, "hunyuan_video.train.dit", False)


def test_no_product_module_imports_the_tiny_world():
    files = [p for p in PACKAGE.rglob("*.py") if (PACKAGE / "tiny") not in p.parents]
    assert len(files) > 10 and PACKAGE / "cli.py" in files
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} (in {function or 'module level'})"
                 for path in files for line, function in _tiny_imports(path) if not _allowed(path, function)]
    assert not offenders, "product modules import hunyuan_video.tiny: " + ", ".join(offenders)
    cli_commands = {function for _, function in _tiny_imports(PACKAGE / "cli.py")}
    assert TINY_COMMANDS <= cli_commands  # the exemption names functions that exist and do import the tiny world


def test_importing_the_product_loads_no_tiny_module():
    modules = sorted(info.name for info in pkgutil.walk_packages(hunyuan_video.__path__, "hunyuan_video.")
                     if not (info.name == TINY or info.name.startswith(TINY + "."))
                     and info.name.rsplit(".", 1)[-1] != "__main__")
    assert {"hunyuan_video.cli", "hunyuan_video.checkpoint", "hunyuan_video.models.transformer"} <= set(modules)
    assert any(m.startswith("hunyuan_video.train.") for m in modules)
    assert any(m.startswith("hunyuan_video.data.") for m in modules)
    script = (
        "import importlib, json, sys\n"
        "import hunyuan_video\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from hunyuan_video.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hunyuan_video'))))\n"
    )
    path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(modules) <= set(loaded)
    assert not [m for m in loaded if m == TINY or m.startswith(TINY + ".")]
