"""Checks the mitigation of PYSEC-2026-2447 (diskcache pickles) for one DVC project.

DVC keeps its state and index caches in diskcache stores under its site-cache dir; whoever can
write there can plant a pickle that DVC executes. By default that dir is /var/tmp/dvc/repo, made
world-writable by DVC. The mitigation (security/audit-exceptions.txt): core.site_cache_dir (or
DVC_SITE_CACHE_DIR) names a dir of the service user, and it, the DVC cache and .dvc/tmp are
owned by the user running DVC with no group or other permission bits (mode 0700).

Usage: python security/dvc_private_dirs.py [project dir]    exit 0 held, 1 not (says why)
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path


def private_dir_problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path}: missing"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path}: not a directory"
    if info.st_uid != os.geteuid():
        return f"{path}: owned by UID {info.st_uid}, not by the user running DVC (UID {os.geteuid()})"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return f"{path}: mode {mode:04o}, expected 0700 (no group or other access)"
    return None


def problems(project: Path) -> list[str]:
    from dvc.repo import Repo  # the project's DVC: its own configuration resolution

    with Repo(str(project)) as repo:
        configured = os.environ.get("DVC_SITE_CACHE_DIR") or repo.config["core"].get("site_cache_dir")
        effective = Path(repo.site_cache_dir)
        cache = Path(repo.cache.local_cache_dir)
        tmp = Path(repo.tmp_dir)
    if not configured:
        return [f"no core.site_cache_dir: DVC uses its shared default ({effective.parent.parent}, world-writable)"]
    site = Path(configured).resolve()
    found = [problem for path in (site, cache, tmp) if (problem := private_dir_problem(path))]
    if site not in effective.resolve().parents:
        found.append(f"DVC's site cache {effective} is not under the configured {site}")
    return found


def main(argv: list[str]) -> int:
    project = Path(argv[0] if argv else ".").resolve()
    found = problems(project)
    for problem in found:
        print(f"dvc private dirs: {problem}")
    if found:
        return 1
    print(f"dvc private dirs: site cache, cache and tmp of {project} are private to UID {os.geteuid()} (0700)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
