#!/usr/bin/env bash
# Creates .venv with the project installed editable (dev extras) and makes Debian's bcc importable from it.
set -euo pipefail
venv=${1:-.venv}
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"

# Debian's python3-bpfcc is pure Python over libbcc.so: expose only the bcc package (not all of
# dist-packages) to the venv through a directory of one symlink and a .pth file.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  mkdir -p "$venv/bcc-path"
  ln -sfn /usr/lib/python3/dist-packages/bcc "$venv/bcc-path/bcc"
  echo "$(cd "$venv/bcc-path" && pwd)" > "$site/nodemesh-bcc.pth"
fi
