from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

sys.path.insert(0, str(Path(__file__).parent))

# Property tests keep no example database and no caches in the repository: a failure is
# reproduced from the example it prints, and the shared machine's timing is no deadline.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hooktap-hypothesis")
settings.register_profile("hooktap", database=None, deadline=None)
settings.load_profile("hooktap")


@pytest.fixture(autouse=True)
def hooktap_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOOKTAP_HOME; none may touch the developer's real one."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOOKTAP_HOME", str(home))
    monkeypatch.delenv("PIVOTAL_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("HOOKTAP_RELAY", raising=False)
    return home


@pytest.fixture
def secret() -> str:
    return "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture
def procs():
    from support.procs import Procs

    started = Procs()
    yield started
    started.stop_all()
