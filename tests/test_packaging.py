"""The wheel is the product: what `pip install sweepflow` puts on a machine, read from a real build.

The build runs offline (no build isolation: setuptools comes from the dev extra). `.ci/wheel-check` goes further
in CI: it installs the wheel into a fresh virtualenv outside the checkout and runs the demo from it.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Repository folder -> where its files land in the wheel.
MAPPED = {
    "sweepflow": "sweepflow",
    "flows": "sweepflow/flows",
    "tasks": "sweepflow/tasks",
    "deployments": "sweepflow/deployments",
    "examples": "sweepflow/examples",
}


def _source_files() -> list[str]:
    """The checkout's files, tracked or new, without ignored ones (no stale ``build/``, no venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    return [path for path in listed.stdout.splitlines() if (ROOT / path).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy: setuptools reuses a `build/` folder in place, which would hide a package left out.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for path in _source_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("sweepflow-*.whl")
    return zipfile.ZipFile(path)


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (member,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(member).decode()


def test_one_import_name(wheel: zipfile.ZipFile) -> None:
    assert _dist_info(wheel, "top_level.txt").split() == ["sweepflow"]
    assert {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")} == {
        "sweepflow"
    }


def test_every_source_and_data_file_ships(wheel: zipfile.ZipFile) -> None:
    expected = set()
    for path in _source_files():
        folder, _, rest = path.partition("/")
        if folder in MAPPED and path.endswith((".py", ".yaml", "py.typed")):
            expected.add(f"{MAPPED[folder]}/{rest}")
    missing = expected - set(wheel.namelist())
    assert not missing, f"not in the wheel (add the package to pyproject's [tool.setuptools] packages): {missing}"
    assert "sweepflow/deployments/digits-campaign.yaml" in expected  # the demo's files are among them
    assert "sweepflow/examples/train_digits.py" in expected


def test_metadata_a_user_of_the_index_reads(wheel: zipfile.ZipFile) -> None:
    meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "sweepflow" and meta["Summary"] and meta["Requires-Python"] == "<3.12,>=3.11"
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# sweepflow")  # the README is the long description
    assert not meta.get_all("Project-URL")  # none invented
    entry_points = _dist_info(wheel, "entry_points.txt")
    assert "[prefect.collections]\nsweepflow = sweepflow.tasks.blocks" in entry_points
    assert "sweepflow = sweepflow.cli:app" in entry_points


def test_prefect_collection_entry_point_defines_the_blocks() -> None:
    """What Prefect imports at start-up (the entry point's module) defines every block sweepflow re-exports."""
    from importlib.metadata import entry_points

    import sweepflow

    (point,) = [p for p in entry_points(group="prefect.collections") if p.name == "sweepflow"]
    module = point.load()
    for name in sweepflow._BLOCKS:
        assert getattr(module, name) is getattr(sweepflow, name)


def test_a_deployments_default_spec_resolves_to_the_shipped_one_outside_a_checkout(tmp_path, monkeypatch) -> None:
    from sweepflow.campaign.preflight import CampaignError, load_campaign

    monkeypatch.chdir(tmp_path)  # a worker's working directory with no checkout in it
    assert load_campaign("deployments/digits-campaign.yaml").name == "digits"
    with pytest.raises(CampaignError, match=r"no such file 'deployments/absent\.yaml'"):
        load_campaign("deployments/absent.yaml")
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "digits-campaign.yaml").write_text("name: mine\nstages: {}\n")
    with pytest.raises(CampaignError):  # the working directory's own file wins over the shipped one
        load_campaign("deployments/digits-campaign.yaml")
