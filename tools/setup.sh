#!/usr/bin/env bash
# Installs what Lethe needs to build and test (Debian package names), when it is missing.
# Run as root (or with sudo available); otherwise it prints the exact install line and stops.
set -euo pipefail

# zlib: the zlib membership-inference attack (libz is already a dependency of HDF5).
# python3-scipy, python3-nltk: independent oracles of the evaluation statistics (KS test, Porter
# stemmer). chromium, poppler-utils: the test that renders report.html headless. python3-venv:
# the safetensors oracle installs pip's `safetensors` into a venv over Debian's numpy and torch.
# openmpi-bin, libopenmpi-dev: the MPI communicator (host/comm_mpi.c) and its mpirun tests.
packages=(build-essential cmake pkg-config libhdf5-dev hdf5-tools libyaml-dev libopenblas-dev
          openmpi-bin libopenmpi-dev
          zlib1g-dev python3-torch python3-h5py python3-numpy python3-scipy python3-nltk
          python3-venv chromium poppler-utils fonts-dejavu-core)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
  exit 0
fi

install_line="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "setup: installing ${missing[*]} with sudo"
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root:  $install_line" >&2
  exit 1
fi
echo "setup: done"
