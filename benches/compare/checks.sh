# Sourced by the real-data checks (damage-check.sh, second-reader.sh): the corpus
# (built when missing), a release strata, and the venv with the Python reader's
# packages. Sets STRATA, PY and REF (the Python reader's command).
HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORPUS=${CORPUS:-/var/tmp/strata-corpus}
[[ -d $CORPUS/tree && -f $CORPUS/image-clean.raw ]] || CORPUS=$CORPUS bash "$HERE/corpus.sh"
(cd "$ROOT" && cargo build --release --quiet --bin strata)
STRATA=$ROOT/target/release/strata
PY=$ROOT/.venv/bin/python
if [[ ! -x $PY ]]; then
  python3 -m venv "$ROOT/.venv"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/spec/reference-py/requirements.txt"
fi
REF=("$PY" "$ROOT/spec/reference-py/strata_ref.py")
