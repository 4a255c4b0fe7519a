#!/usr/bin/env bash
# Install the package into a fresh venv per Python and run the quick check on each: the demo answer
# (`make demo`'s command) and `pytest -q tests/model tests/video`. CI runs the full suite on Python 3.11 only;
# this script is the check for the other supported Pythons (README, Install, says why it is not in CI).
#
#   bash scripts/check_pythons.sh 3.12 3.13            # the locked versions (requirements.lock) on 3.12 and 3.13
#   bash scripts/check_pythons.sh --lowest 3.11        # the lowest allowed versions (requirements-min.txt)
#   bash scripts/check_pythons.sh --record 3.12 3.13   # also add a result row per Python to docs/python-versions.md
#
# Each venv lives in $CHECK_DIR/<set>-py<version> (default /tmp/llava-check-pythons-<checksum of this checkout's
# path>) and is rebuilt each run; the logs go beside it. Pythons are found as pythonX.Y on PATH or under `pyenv root`. torch comes from the CPU index
# (https://download.pytorch.org/whl/cpu) when it answers, otherwise from the default index: on Linux x86_64 that
# is a CUDA build of several GB, so the script first checks free disk space ($MIN_FREE_GB, default 15).
# EXTRAS (default dev,quant: the model tests load in 8 bits and with a device_map) and TESTS (default
# "tests/model tests/video") choose what is installed and run; TORCH=X.Y.Z replaces the set's torch pin (CI runs
# the lowest set with TORCH=2.13.0, the local CPU wheel of Python 3.11).
# Exit status: 0 if every Python passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CONSTRAINTS=requirements.lock
SET=lock
RECORD=""
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --lowest) CONSTRAINTS=requirements-min.txt; SET=lowest ;;
        --record) RECORD=docs/python-versions.md ;;
        *) echo "error: unknown option $1 (options: --lowest, --record)" >&2; exit 2 ;;
    esac
    shift
done
[[ $# -gt 0 ]] || { echo "usage: $0 [--lowest] [--record] VERSION... (e.g. 3.12 3.13)" >&2; exit 2; }

# one folder per checkout, so that checks run from two clones at once never share a venv
CHECK_DIR=${CHECK_DIR:-${TMPDIR:-/tmp}/llava-check-pythons-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)}
MIN_FREE_GB=${MIN_FREE_GB:-15}
EXTRAS=${EXTRAS:-dev,quant}
TESTS=${TESTS:-tests/model tests/video}
CPU_INDEX=https://download.pytorch.org/whl/cpu
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
QUERY="What was in the first scene?"
EXPECTED="green triangle"  # playground/demo/shapes_truth.json: the first scene
export HF_HUB_OFFLINE=1
mkdir -p "$CHECK_DIR"
if [[ -n ${TORCH:-} ]]; then  # the same set with another torch
    sed "s/^torch==.*/torch==$TORCH/" "$CONSTRAINTS" > "$CHECK_DIR/constraints-$SET-torch$TORCH.txt"
    CONSTRAINTS="$CHECK_DIR/constraints-$SET-torch$TORCH.txt"
    SET="$SET, torch $TORCH"
fi

find_python() {  # the interpreter for version $1 that runs, or nothing (a pyenv shim of a version not selected fails)
    local v=$1 p
    local candidates=()
    if command -v pyenv >/dev/null; then
        candidates+=("$(pyenv root)"/versions/"$v".*/bin/python"$v")
    fi
    candidates+=("$(command -v "python$v" 2>/dev/null)")
    for p in "${candidates[@]}"; do
        [[ -n $p && -x $p ]] && "$p" -c 'pass' 2>/dev/null && { echo "$p"; return; }
    done
}

free_gb() { df -Pk "$CHECK_DIR" | awk 'NR==2 {print int($4 / 1048576)}'; }

torch_args() {  # pip arguments that install the constrained torch, from the CPU index when it is reachable
    local spec
    spec=$(grep -E '^torch==' "$CONSTRAINTS" | head -n1)
    if curl -sf --max-time 10 -o /dev/null "$CPU_INDEX/torch/"; then
        echo "$spec --index-url $CPU_INDEX --extra-index-url https://pypi.org/simple"
    else
        echo "$spec"
    fi
}

check_one() {  # $1: version; prints one Markdown result row on stdout, details in the log
    local v=$1 py venv log start t_install t_total demo summary status torch_from versions
    venv="$CHECK_DIR/${SET//[ ,]/}-py$v"
    log="$venv.log"
    py=$(find_python "$v")
    if [[ -z $py ]]; then
        echo "| $(date -u +%F) | $v | ($SET) | - | no python$v found | - | FAIL |"
        return 1
    fi
    start=$(date +%s)
    : > "$log"
    echo "== Python $v ($py), $SET set, venv $venv, free disk $(free_gb) GB" | tee -a "$log" >&2
    if (( $(free_gb) < MIN_FREE_GB )); then
        echo "error: less than $MIN_FREE_GB GB free under $CHECK_DIR" | tee -a "$log" >&2
        echo "| $(date -u +%F) | $v | ($SET) | - | not run: disk under $MIN_FREE_GB GB | - | FAIL |"
        return 1
    fi
    rm -rf "$venv"
    local ok=1
    {
        "$py" -m venv "$venv" &&
        "$venv/bin/pip" install -q -c "$CONSTRAINTS" --upgrade pip &&
        # shellcheck disable=SC2046
        "$venv/bin/pip" install -q -c "$CONSTRAINTS" $(torch_args) &&
        "$venv/bin/pip" install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"
    } >>"$log" 2>&1 || ok=0
    t_install=$(( $(date +%s) - start ))
    if (( ok )); then
        versions=$("$venv/bin/python" - <<'EOF' 2>>"$log"
import sys, importlib.metadata as md
names = ["torch", "transformers", "av", "numpy"]
print(f"{sys.version.split()[0]}: " + ", ".join(f"{n} {md.version(n)}" for n in names))
EOF
)
        echo "installed in ${t_install}s: $versions" | tee -a "$log" >&2
        demo=$("$venv/bin/python" -m llava.serve.cli --video-file playground/demo/shapes.mp4 --query "$QUERY" 2>>"$log" | tail -n1)
        echo "demo: $demo" | tee -a "$log" >&2
        [[ $demo == *"$EXPECTED"* ]] || ok=0
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pytest -q -p no:cacheprovider $TESTS >>"$log" 2>&1 || ok=0
        summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ (passed|failed|error)' "$log" | tail -n1 | sed 's/=//g; s/^ *//; s/ *$//')
        echo "pytest: $summary" | tee -a "$log" >&2
    else
        versions="install failed (see $log)"
        demo="-"
        summary="-"
    fi
    t_total=$(( $(date +%s) - start ))
    status=PASS
    if (( ! ok )); then
        status=FAIL
        echo "-- Python $v failed; the end of $log:" >&2
        grep -v '^WARNING: Location' "$log" | tail -n 40 >&2
    fi
    echo "| $(date -u +%F) | $v | $versions ($SET; code at $COMMIT) | ${t_install}s install, ${t_total}s total | demo: $demo | $summary | $status |"
    (( ok ))
}

rows=()
failed=0
for v in "$@"; do
    row=$(check_one "$v") || failed=1
    rows+=("$row")
done

echo
echo "| date | Python | versions (set) | time | demo answer | pytest $TESTS | result |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
if [[ -n $RECORD ]]; then
    printf '%s\n' "${rows[@]}" >> "$ROOT/$RECORD"
    echo "(rows added to $RECORD)"
fi
exit $failed
