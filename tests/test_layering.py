"""The import order between the domain apps and the interface layers (issue 14), read from the source.

accounts <- stations <- sessions <- energy <- billing: an app imports only the apps to its left. Domain apps
never import the interface layers under cpms/ (the OCPP server, the portal, the simulator); they may import
the cpms base modules and the pure OCPP wire package cpms/ocpp_wire, as long as those import no domain app
(that would be a cycle). The simulator imports nothing of Django nor of the server it talks to. Every import
counts, those inside functions and `if TYPE_CHECKING:` blocks too: an import hidden in a function is still a
dependency.
"""

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_APPS = ("accounts", "stations", "sessions", "energy", "billing")
INTERFACE_LAYERS = ("cpms.ocpp", "cpms.portal", "cpms.simulator")


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> Iterator[str]:
    """Every module `source` imports, wherever the import statement is (relative imports resolved)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            yield stem
            if "." not in stem or not node.module:
                # `from cpms import ocpp` (or `from . import x`) may import a module: count it as one.
                for alias in node.names:
                    yield f"{stem}.{alias.name}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _app_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in DOMAIN_APPS else None


def domain_violations(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The imports of the domain module `module` that break the order or reach an interface layer."""
    app = _app_of(module)
    assert app is not None, module
    found = set()
    for imported in imported_modules(source, module, is_package=is_package):
        other = _app_of(imported)
        if other is not None and DOMAIN_APPS.index(other) > DOMAIN_APPS.index(app):
            found.add(imported)
        if any(_within(imported, layer) for layer in INTERFACE_LAYERS):
            found.add(imported)
    return found


def simulator_violations(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The simulator is a charger: nothing of Django, of a domain app or of the rest of cpms."""
    found = set()
    for imported in imported_modules(source, module, is_package=is_package):
        top = imported.split(".")[0]
        if top in ("django", "channels", "rest_framework", *DOMAIN_APPS) or (
            top == "cpms" and imported != "cpms" and not _within(imported, "cpms.simulator")
        ):
            found.add(imported)
    return found


def wire_violations(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The OCPP wire package is importable by the domain: no domain app, no database, no channels."""
    found = set()
    for imported in imported_modules(source, module, is_package=is_package):
        if (
            _app_of(imported)
            or _within(imported, "django.db")
            or imported.split(".")[0] == "channels"
            or any(_within(imported, layer) for layer in INTERFACE_LAYERS)
        ):
            found.add(imported)
    return found


def _sources(*packages: str, root: Path = ROOT) -> Iterator[tuple[Path, str]]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.relative_to(root).parts:
                continue
            yield path, _module_name(path, root)


@functools.cache
def _all_violations() -> dict[str, set[tuple[str, str]]]:
    checks = {
        "domain": (domain_violations, DOMAIN_APPS),
        "simulator": (simulator_violations, ("cpms/simulator",)),
        "wire": (wire_violations, ("cpms/ocpp_wire",) if (ROOT / "cpms/ocpp_wire").is_dir() else ()),
    }
    found: dict[str, set[tuple[str, str]]] = {}
    for kind, (check, packages) in checks.items():
        found[kind] = {
            (module, imported)
            for path, module in _sources(*packages)
            for imported in check(path.read_text(), module, is_package=path.name == "__init__.py")
        }
    return found


def test_domain_apps_import_only_to_their_left_and_no_interface_layer():
    found = _all_violations()["domain"]
    assert sorted(found) == []


def test_simulator_imports_no_django_domain_or_server():
    assert sorted(_all_violations()["simulator"]) == []


def test_ocpp_wire_imports_no_domain_database_or_channels():
    assert sorted(_all_violations()["wire"]) == []


def _module_path(module: str, root: Path) -> Path | None:
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def base_module_cycles(root: Path = ROOT) -> set[tuple[str, str]]:
    """(cpms module, domain module it imports) for every cpms module the domain imports, directly or
    through other cpms modules: such an import would be a cycle between the domain and the project package."""
    todo = [
        imported
        for path, module in _sources(*DOMAIN_APPS, root=root)
        for imported in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")
        if _within(imported, "cpms")
    ]
    seen: set[str] = set()
    found = set()
    while todo:
        module = todo.pop()
        path = _module_path(module, root)
        if module in seen or path is None:
            continue
        seen.add(module)
        for imported in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py"):
            if _app_of(imported):
                found.add((module, imported))
            elif _within(imported, "cpms"):
                todo.append(imported)
    return found


def test_cpms_modules_the_domain_imports_import_no_domain_app():
    assert sorted(base_module_cycles()) == []


def test_the_scan_covers_every_domain_app():
    modules = {module.split(".")[0] for _, module in _sources(*DOMAIN_APPS)}
    assert modules == set(DOMAIN_APPS)


# --- the checker catches what it should (a test that cannot fail is a defect) -----------------------


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("accounts.selectors", "def f():\n    from stations.models import Site\n", {"stations.models"}),
        ("stations.services.demo", "import sessions.models\n", {"sessions.models"}),
        (
            "energy.selectors",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from billing.models import Cdr\n",
            {"billing.models"},
        ),
        ("sessions.api.views", "from cpms.ocpp import commands\n", {"cpms.ocpp"}),
        ("sessions.api.views", "from cpms import portal\n", {"cpms.portal"}),
        ("billing.services.kpis", "from ..selectors import x\n", set()),
        ("stations.services.demo", "from ...sessions import models\n", {"sessions", "sessions.models"}),
        (
            "billing.tasks",
            "from sessions.models import ChargingSession\nfrom cpms.errors import NotFound\n",
            set(),
        ),
        ("stations.api.commands", "from cpms.ocpp_wire.calls import Call\n", set()),
    ],
)
def test_domain_checker(module, source, expected):
    assert domain_violations(source, module) == expected


def test_simulator_checker():
    source = (
        "import asyncio\nfrom cpms.simulator.meter import Meter\nfrom django.conf import settings\n"
        "def f():\n    from cpms.ocpp_wire import calls\n    import stations.models\n"
    )
    assert simulator_violations(source, "cpms.simulator.charger") == {
        "django.conf",
        "cpms.ocpp_wire",
        "stations.models",
    }


def test_wire_checker():
    source = "from django.db import models\nimport channels.layers\nfrom jsonschema import validate\n"
    assert wire_violations(source, "cpms.ocpp_wire.calls") == {
        "django.db",
        "channels.layers",
    }


def test_cycle_checker(tmp_path):
    files = {
        "accounts/models.py": "from cpms.errors import NotFound\n",
        "cpms/__init__.py": "",
        "cpms/errors.py": "import cpms.jobs\n",
        "cpms/jobs.py": "def run():\n    from billing.models import Cdr\n",
        "cpms/portal/views.py": "from stations.models import Site\n",  # not imported by the domain: allowed
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert base_module_cycles(tmp_path) == {("cpms.jobs", "billing.models")}
