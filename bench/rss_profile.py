"""Where the API process's resident memory goes, import by import (`python -m bench.rss_profile`).

Two fresh interpreters. The first does what the serving process does (`api.main:app`, its
lifespan with a model load, one request) and reports which top-level packages it ended up
importing. The second imports those packages one at a time in a fixed order, reading VmRSS
(/proc/self/status: C extensions included, unlike tracemalloc) after each, then builds the
app, runs its lifespan (model load and compiled copy) and serves 1,000 requests. A package the
serving process does not load is not imported, so the table shows what the process really pays.
The project, MLflow and state folders come from the environment, as for uvicorn. `make bench`
runs it on its own project (bench_rss_profile); this module imports no other bench module, so
the profiled interpreters load nothing the serving process would not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.project import Project

# Heavy dependencies in the order they are imported and attributed: each row is what it pulls in
# that no earlier row did (MLflow last: its row is what dropping it saves). Anything else lands
# in the "rest of api.main" row.
PACKAGES: tuple[str, ...] = (
    "uvicorn", "numpy", "scipy.sparse", "treelite", "pydantic", "fastapi", "sqlalchemy.orm", "pwdlib", "jwt",
    "prometheus_client", "httpx", "requests", "scipy.stats", "pyarrow", "pandas", "sklearn", "sklearn.ensemble",
    "pytest", "skops.io", "mlflow",
)  # fmt: skip
REQUESTS = 1000
ROW = [10, 3, 1, 0.0, 2021, 60, 2, 1, 1, 3, 2, 1, 1, 50, 7, 12, 5, 77, 77317, 2, 1, 0, 6, 48.6, 2.89, 17, 2, 1]


def vm_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)


def _serve(app: Any, requests: int) -> None:
    from fastapi.testclient import TestClient

    from accidents.config import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME

    with TestClient(app) as client:
        login = {"username": DEMO_ADMIN_USERNAME, "password": DEMO_ADMIN_PASSWORD}
        token = client.post("/auth/token", data=login).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(requests):
            response = client.post("/predict", json={"features": ROW}, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"/predict answered {response.status_code}: {response.text}")


def loaded_packages() -> None:
    """First interpreter: serve one request as `api.main:app`; print the PACKAGES now loaded."""
    import uvicorn  # noqa: F401  (what serves the app; the profile's client is in-process)

    import api.main

    _serve(api.main.app, 1)
    kept_out = any(type(finder).__name__ == "_KeepOut" for finder in sys.meta_path)  # api/serving/lean_imports.py
    print(json.dumps({"packages": [name for name in PACKAGES if name in sys.modules], "kept_out": kept_out}))


def profile(loaded: dict[str, Any]) -> None:
    """Second interpreter: the rows of the table, as JSON."""
    import importlib

    rows = [("interpreter", vm_rss_mb())]
    if loaded["kept_out"]:  # as the serving entry point does before any model load
        from api.serving.lean_imports import keep_heavy_modules_out

        keep_heavy_modules_out()
    for name in (name for name in PACKAGES if name in loaded["packages"]):
        importlib.import_module(name)
        rows.append((name, vm_rss_mb()))
    import api.main

    rows.append(("rest of api.main (our modules, auth, schemas)", vm_rss_mb()))
    app = api.main.app
    rows.append(("app built (create_app)", vm_rss_mb()))
    _serve(app, 0)
    rows.append(("lifespan: users DB, model loaded and compiled", vm_rss_mb()))
    _serve(app, REQUESTS)
    rows.append((f"{REQUESTS:,} requests served (in-process client)", vm_rss_mb()))
    print(json.dumps(rows))


def run(env: dict[str, str] | None = None, cwd: Path | None = None) -> list[tuple[str, float, float]]:
    """(step, RSS after it, delta) for each step, each phase in a fresh interpreter."""
    env = {**(env or os.environ), "PYTHONWARNINGS": "ignore"}

    def phase(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "bench.rss_profile", *args], capture_output=True, text=True,
                             env=env, cwd=cwd, check=True, timeout=600).stdout  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    loaded = phase("--loaded")
    rows = phase("--profile", json.dumps(loaded))
    return [(name, rss, round(rss - (rows[i - 1][1] if i else 0.0), 1)) for i, (name, rss) in enumerate(rows)]


def bench_rss_profile(project: Project, log_dir: Path) -> list[tuple[str, float, float]]:
    """The profile on the bench's project and registry (`make bench`): the API's memory, import by import."""
    return run(project.env(MODEL_POLL_SECONDS="0", STATE_DIR=str(log_dir / "profile-state")), project.root)


def markdown(rows: list[tuple[str, float, float]]) -> str:
    lines = ["| step (serving order) | VmRSS after | + |", "|---|---|---|"]
    lines += [f"| {name} | {rss:.1f} MB | {delta:+.1f} |" for name, rss, delta in rows]
    return "\n".join(lines) + "\n"


def section(rows: list[tuple[str, float, float]]) -> list[str]:
    """The table as a section of the `make bench` report."""
    return ["", "Our API's resident memory, import by import (`python -m bench.rss_profile`):", "",
            markdown(rows).rstrip("\n")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loaded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loaded:
        loaded_packages()
    elif args.profile:
        profile(json.loads(args.profile))
    else:
        print(markdown(run()), end="")


if __name__ == "__main__":
    main()
