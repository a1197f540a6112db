"""No module imports a name from a package ``__init__`` above it (``from bootc_embed import
build``, ``from .. import __version__``, ``from . import ImageSource`` inside _transports):
such an import runs the whole package first and makes a loop that works only as long as
something else is imported lazily. Importing a sibling module through the package
(``from . import _compress``) is fine."""

from __future__ import annotations

import ast
from pathlib import Path

import bootc_embed


def _upward_imports(root: Path) -> list[str]:
    """Every ``from PACKAGE import NAME`` in the package at ``root`` where PACKAGE is an
    ancestor of the importing module and NAME is not a module."""

    def is_module(dotted: str) -> bool:
        path = root.parent.joinpath(*dotted.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    found = []
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
            here = parts  # a package's relative imports start at the package itself
        else:
            here = parts[:-1]
        name = ".".join(parts)
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target not in ancestors:
                continue
            for alias in node.names:
                if not is_module(f"{target}.{alias.name}"):
                    found.append(f"{name}:{node.lineno} imports {alias.name} from {target}")
    return found


def test_no_module_imports_from_a_package_init_above_it() -> None:
    assert _upward_imports(Path(bootc_embed.__file__).parent) == []


def test_the_check_finds_upward_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "deep").mkdir(parents=True)
    files = {
        "__init__.py": "from .leaf import thing\nfrom .sub import helper\n",
        "leaf.py": "from . import other\nfrom pkg import VERSION\n",
        "other.py": "",
        "sub/__init__.py": "from .mod import helper\nfrom . import mod\n",
        "sub/mod.py": "from .. import other, VERSION\nfrom . import Proto\nfrom .deep import x\n",
        "sub/deep/__init__.py": "from ... import leaf\nfrom ...sub import helper\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    assert _upward_imports(pkg) == [
        "pkg.leaf:2 imports VERSION from pkg",
        "pkg.sub.deep:2 imports helper from pkg.sub",
        "pkg.sub.mod:1 imports VERSION from pkg",
        "pkg.sub.mod:2 imports Proto from pkg.sub",
    ]
