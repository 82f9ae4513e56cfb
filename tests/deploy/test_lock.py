"""The lock files cover requirements*.txt: every dependency is pinned, at a version in its range."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RELOCK = "run `make lock` after editing requirements*.txt"


def requirements(path: Path) -> list[Requirement]:
    """Direct requirements of a requirements file, following `-r other.txt`."""
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
        else:
            found.append(Requirement(line))
    return found


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line.strip())
        assert match, f"{path.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


@pytest.mark.parametrize("source,lock", [("requirements.txt", "requirements.lock"),
                                         ("requirements-dev.txt", "requirements-dev.lock")])
def test_every_requirement_is_locked_at_a_version_it_allows(source, lock):
    pins = lock_pins(ROOT / lock)
    for req in requirements(ROOT / source):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in {source} but not in {lock}: {RELOCK}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{lock} pins {req.name}=={pins[name]}, outside {source}'s {req.specifier}: {RELOCK}"


def test_the_dev_lock_agrees_with_the_runtime_lock_and_holds_no_cuda_build():
    runtime, dev = lock_pins(ROOT / "requirements.lock"), lock_pins(ROOT / "requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime  # tests run what production installs
    assert runtime["torch"] == "2.13.0"
    assert [name for name in dev if name.startswith(("nvidia-", "triton", "cuda-"))] == []


def test_pyyaml_is_a_test_dependency_only():
    assert "pyyaml" not in {canonicalize_name(r.name) for r in requirements(ROOT / "requirements.txt")}
    assert "pyyaml" in {canonicalize_name(r.name) for r in requirements(ROOT / "requirements-dev.txt")}
