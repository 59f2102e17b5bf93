#!/bin/sh
# scripts/deps.sh — make sure every Debian package the build and the tests need is installed.
# Installs only the missing ones with apt-get when run as root; otherwise prints the exact
# command to run and fails. Nothing is downloaded from anywhere but Debian's archive.
set -eu

PKGS="build-essential pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev libuv1-dev
libopenblas-dev libdnnl-dev libpng-dev libjpeg-dev zlib1g-dev libcmocka-dev curl python3
sqlite3 dataset-fashion-mnist"
# PyTorch is needed only to regenerate fixtures and to benchmark (make golden / make bench).
if [ "${CT_WITH_TORCH:-0}" = 1 ]; then PKGS="$PKGS python3-torch python3-torchvision"; fi

missing=""
for p in $PKGS; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "coretuned: missing Debian packages:$missing" >&2
    echo "run:  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "coretuned: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
