#!/usr/bin/env bash
# make's uv when none is on PATH (the Makefile's `uv` target): installed into a private venv, DIR
# (default ~/.cache/accidents-mlops/uv), whose bin/ the Makefile puts first on its PATH, so it is
# found whatever the user's PATH. `python3 -m pip install uv` is refused by a PEP 668 system
# Python ("externally-managed-environment": Debian 12, Ubuntu 24.04, Homebrew) and, where it
# works, may land in a bin folder that is not on PATH; a venv of our own has neither problem.
# Fallback: pipx (its uv linked into DIR/bin). Otherwise it stops with the commands to run.
#   bash scripts/install_uv.sh DIR        (PYTHON=python3.11 to use another interpreter)
set -uo pipefail
dest="${1:?usage: install_uv.sh DIR}"
python="${PYTHON:-python3}"
say() { echo "install_uv: $*" >&2; }

say "no uv on PATH: installing it into a private venv, $dest"
if "$python" -m venv "$dest" && "$dest/bin/python" -m pip install --quiet --disable-pip-version-check uv; then
  "$dest/bin/uv" --version && exit 0
fi
rm -rf "$dest"
if command -v pipx >/dev/null && pipx install --quiet uv; then
  mkdir -p "$dest/bin"
  ln -sf "$(pipx environment --value PIPX_BIN_DIR)/uv" "$dest/bin/uv"
  "$dest/bin/uv" --version && exit 0
fi
say "could not install uv ($python -m venv or pip failed, no pipx). Install it, then run make again:"
say "  Debian/Ubuntu: sudo apt-get install python3-venv   (make then installs uv itself)"
say "  or:            curl -LsSf https://astral.sh/uv/install.sh | sh"
say "  macOS:         brew install uv"
exit 1
