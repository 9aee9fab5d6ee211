#!/usr/bin/env bash
# Creates the Python environment that scripts/export_onnx.py runs in: .venv/ in the project root
# (override with FACE_MULTITASK_VENV=DIR), with requirements-python.txt and py-feat's own model code
# for every release the exporter builds networks with:
#
#   py-feat 2.1.5  pip install --no-deps into .venv   v2.8 (current release)
#   py-feat 2.1.1  unpacked into .venv/pyfeat-2.1.1/  v2.7
#   py-feat 2.0.3  unpacked into .venv/pyfeat-2.0.3/  v2.5, and v2.4 (see scripts/pyfeat_v24/)
#
# py-feat's full dependency set (pandas, xgboost, scikit-learn, torchcodec, ...) is not installed:
# the exporter imports only feat/multitask (model_v2.py, heads_v3.py, heads_v26.py), without
# running feat/__init__.py, and that needs torch, torchvision and timm alone.
#
# Idempotent: every step is skipped when what it makes is already there and matches. Re-run after
# editing requirements-python.txt. Usage: bash scripts/setup-python.sh   (npm run setup:python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACE_MULTITASK_VENV:-$ROOT/.venv}"
REQ="$ROOT/requirements-python.txt"
PYTHON="${PYTHON:-python3}"
PYFEAT_MAIN=2.1.5            # installed into site-packages with --no-deps
PYFEAT_SIDE=(2.0.3 2.1.1)    # unpacked into $VENV/pyfeat-<version>/

START=$(date +%s)
step() { printf '[setup-python] %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - START ))s"; }

# --- 1. Python ---------------------------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "[setup-python] error: $PYTHON not found; install Python 3.11+ or set PYTHON=/path/to/python3" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "[setup-python] error: $("$PYTHON" --version 2>&1) is too old: py-feat 2.x needs Python 3.11+ (set PYTHON=...)" >&2
  exit 1
fi

# --- 2. venv -----------------------------------------------------------------------------------
# A venv whose Python no longer runs (the interpreter it links to was removed or upgraded) or is
# older than 3.11 is made again, emptied: keeping it would fail later, in pip or in the export.
venv_python_ok() {
  "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}
venv_pip_ok() {
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}
if [ -x "$VENV/bin/python" ] && venv_python_ok && venv_pip_ok; then
  step "venv: $VENV exists ($("$VENV/bin/python" --version 2>&1)), kept"
elif [ -x "$VENV/bin/python" ] && venv_python_ok; then
  # `python3 -m venv` interrupted while it installed pip (or run where Debian's python3-venv was
  # missing) leaves a venv without pip: kept, every later run would fail in pip.
  step "venv: $VENV has no pip (its creation failed or was interrupted): recreating it (emptied) with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv --clear "$VENV"
elif [ -e "$VENV/bin/python" ] || [ -L "$VENV/bin/python" ]; then
  found="$("$VENV/bin/python" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)"
  step "venv: $VENV has ${found:-a Python that does not run}, not Python 3.11+: recreating it (emptied) with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv --clear "$VENV"
else
  step "venv: creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if ! venv_pip_ok; then
  echo "[setup-python] error: $VENV has no pip: \`$PYTHON -m venv\` could not install it (on Debian and Ubuntu: apt install python3-venv, or python3.X-venv for Python 3.X)" >&2
  exit 1
fi

# --- 3. requirements-python.txt -----------------------------------------------------------------
# A stamp of the requirements file's hash says the last install of exactly this file succeeded;
# pins_ok then confirms every pinned version is still the installed one. (`pip check` cannot be
# used: py-feat is installed without its dependencies on purpose, and pip check reports that.)
STAMP="$VENV/.face-multitask-requirements.sha256"
REQ_HASH="$(sha256sum "$REQ" | cut -d' ' -f1)"
pins_ok() {
  "$VPY" - "$REQ" <<'PY'
import importlib.metadata as md, re, sys
bad = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s#;]+)", line)
    if not m:
        continue
    name, want = m.groups()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        bad.append(f"{name}=={want} (installed: {have})")
if bad:
    print("[setup-python] not as pinned: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ] && pins_ok; then
  step "requirements: already satisfied (requirements-python.txt unchanged since the last install)"
else
  # torch's CUDA wheels make the venv ~5.7 GB, and pip holds the ~2.9 GB of wheels it downloaded
  # (its cache and temp folder, on this disk in the usual setup) while it unpacks them: on a fuller
  # disk pip fails minutes in ("No space left on device"). Said first instead, unless torch is in.
  NEED_MB=9000
  free_mb="$(df -Pm "$VENV" 2>/dev/null | awk 'NR == 2 { print $4 }')"
  if ! compgen -G "$VENV/lib/python3*/site-packages/torch/__init__.py" >/dev/null \
     && [ -n "$free_mb" ] && [ "$free_mb" -lt "$NEED_MB" ]; then
    echo "[setup-python] error: the disk of $VENV has $free_mb MB free, and the install needs about $NEED_MB MB (torch's CUDA wheels, downloaded then unpacked); free some space, or make the venv on another disk with FACE_MULTITASK_VENV=DIR" >&2
    exit 1
  fi
  step "requirements: pip install -r requirements-python.txt (torch's CUDA wheels: ~5.7 GB in the venv)"
  LOG="$VENV/.pip-install.log"
  set +e
  "$VPY" -m pip install --disable-pip-version-check --progress-bar off -r "$REQ" 2>&1 \
    | tee "$LOG" | grep --line-buffered -E '^(Collecting|Installing collected|Successfully|ERROR)'
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "[setup-python] error: pip install failed (exit $rc); the end of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit "$rc"
  fi
  pins_ok
  echo "$REQ_HASH" > "$STAMP"
  step "requirements: installed ($(elapsed) so far)"
fi

# --- 4. py-feat (current release) without its dependencies -------------------------------------
have_main="$("$VPY" -c "
import importlib.metadata as m
try: print(m.version('py-feat'))
except m.PackageNotFoundError: print('')" 2>/dev/null || true)"
if [ "$have_main" = "$PYFEAT_MAIN" ]; then
  step "py-feat $PYFEAT_MAIN: already installed (--no-deps)"
else
  step "py-feat $PYFEAT_MAIN: pip install --no-deps py-feat==$PYFEAT_MAIN"
  "$VPY" -m pip install --disable-pip-version-check -q --no-deps "py-feat==$PYFEAT_MAIN"
fi

# --- 5. older py-feat releases' code, side by side ----------------------------------------------
# Each is imported only by its own exporter process (the folder goes first on sys.path there), so
# the releases never mix. feat/tests/ (12 MB of test images) is left out.
for ver in "${PYFEAT_SIDE[@]}"; do
  dest="$VENV/pyfeat-$ver"
  if [ -f "$dest/feat/multitask/model_v2.py" ] && [ -f "$dest/.complete" ]; then
    step "py-feat $ver: model code already in $dest"
    continue
  fi
  step "py-feat $ver: pip download --no-deps py-feat==$ver, unpacking feat/ into $dest"
  dl="$VENV/.downloads"
  mkdir -p "$dl"
  "$VPY" -m pip download --disable-pip-version-check -q --no-deps "py-feat==$ver" -d "$dl"
  rm -rf "$dest"
  "$VPY" - "$dl/py_feat-$ver-py2.py3-none-any.whl" "$dest" <<'EOF'
import sys, zipfile, hashlib, pathlib
whl, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist()
             if (n.startswith("feat/") and not n.startswith("feat/tests/")) or ".dist-info/" in n]
    z.extractall(dest, names)
digest = hashlib.sha256(pathlib.Path(whl).read_bytes()).hexdigest()
(dest / ".complete").write_text(f"{pathlib.Path(whl).name} sha256={digest}\n")
print(f"[setup-python]   {len(names)} files from {pathlib.Path(whl).name} (sha256 {digest[:16]}...)")
EOF
done

# --- 6. check: every release's model class imports --------------------------------------------
step "check: importing each release's feat.multitask model classes (one process each)"
"$VPY" "$ROOT/scripts/export_onnx.py" --check-env

SIZE="$(du -sh "$VENV" 2>/dev/null | cut -f1)"
step "done in $(elapsed); $VENV is $SIZE. Export with: $VPY scripts/export_onnx.py <checkpoint>"
