#!/usr/bin/env bash
# Trims an installed virtualenv for a runtime image (builder stage only):
#   - the test suites that wheels ship (pandas, scipy, numpy, pyarrow, ...: ~135 MB, never
#     imported by the package itself), with their compiled bytecode;
#   - debug symbols of the shared libraries (strip --strip-unneeded: ~100 MB). Libraries under
#     <package>.libs/ are left alone: auditwheel patched them, and stripping breaks their loading.
#   - pip, which nothing runs at runtime (uv installed everything).
# Then imports the given modules, so a trim that broke something fails the build here.
#   docker/slim-venv.sh VENV MODULE [MODULE ...]
set -euo pipefail
venv="$1"; shift
site="$(echo "$venv"/lib/python3*/site-packages)"
before="$(du -sm "$venv" | cut -f1)"
find "$site" -depth -type d \( -name tests -o -name test \) -prune -exec rm -rf {} +
find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*.libs/*' -print0 \
  | xargs -0 -r strip --strip-unneeded
rm -rf "$site"/pip "$site"/pip-*.dist-info "$venv"/bin/pip "$venv"/bin/pip3*
"$venv/bin/python" - "$@" <<'PY'
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
PY
echo "slim-venv: $venv ${before} MB -> $(du -sm "$venv" | cut -f1) MB (imports ok: $*)"
