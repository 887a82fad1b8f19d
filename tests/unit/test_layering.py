"""DESIGN.md's dependency rules, checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"

# Who may import whom (DESIGN.md, "Dependency rules"); stdlib and third-party aside.
ALLOWED: dict[str, set[str]] = {
    "app": {"frontends", "core", "settings", "providers", "store", "types"},
    "cli": {"app", "settings", "logfilter", "store"},
    "__main__": {"cli"},
    "__init__": set(),
    "frontends": {"core", "commands", "types", "frontends"},
    "core": {"commands", "conversation", "connection", "providers", "store", "types"},
    "commands": {
        "commands",
        "store",
        "providers",
        "types",
        "connection",
        "fields",
        "usage",
        "characters",
    },
    "conversation": {
        "conversation",
        "store",
        "providers",
        "types",
        "connection",
        "fields",
        "media",
        "usage",
        "characters",
    },
    "media": {"media", "types"},
    "characters": {"characters", "types"},
    "usage": {"usage", "store", "types"},
    "connection": {"store", "providers", "types"},
    "fields": {"types"},
    "providers": {"providers", "types"},
    "store": {"store", "types", "fields"},
    "settings": {"types"},
    "logfilter": {"types"},
    "types": set(),
}
PLATFORM_LIBRARIES = {"discord", "nio"}


def layer(module: Path) -> str:
    parts = module.relative_to(BOT).with_suffix("").parts
    return parts[0]


def imports(module: Path) -> list[str]:
    tree = ast.parse(module.read_text(), filename=str(module))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_every_import_follows_the_dependency_rules() -> None:
    broken = []
    modules = sorted(BOT.rglob("*.py"))
    assert len(modules) > 30  # the walk found the package
    for module in modules:
        own = layer(module)
        assert own in ALLOWED, f"{module} is in no layer of DESIGN.md"
        for name in imports(module):
            top = name.split(".")[0]
            if top in PLATFORM_LIBRARIES and own != "frontends":
                broken.append(f"{module.relative_to(BOT)} imports {name}")
            if top != "bot" or name == "bot":
                continue
            target = name.split(".")[1]
            if target != own and target not in ALLOWED[own]:
                broken.append(f"{module.relative_to(BOT)} ({own}) imports {name}")
    assert broken == []


def test_a_front_end_never_imports_another() -> None:
    frontends = BOT / "frontends"
    names = {p.stem for p in frontends.iterdir() if p.stem not in ("__init__", "__pycache__")}
    for module in frontends.rglob("*.py"):
        rel = module.relative_to(frontends).parts
        own = rel[0].removesuffix(".py") if len(rel) > 1 else module.stem
        for name in imports(module):
            parts = name.split(".")
            if parts[:2] == ["bot", "frontends"] and len(parts) > 2:
                assert parts[2] in (own, "__init__") or parts[2] not in names, (
                    f"{module.relative_to(BOT)} imports {name}"
                )
