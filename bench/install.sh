#!/bin/sh
# What the benchmarks need besides the project's own setup (`make setup`): Orthanc and its
# DICOMweb plugin from Debian, and dcmtk's storescu/echoscu. Installs only what is missing.
set -eu

missing=""
for package in orthanc orthanc-dicomweb dcmtk; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    echo "bench: orthanc, orthanc-dicomweb and dcmtk are installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "bench: installing$missing"
$sudo apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y $missing

# The orthanc package may start a system service on ports 4242/8042. The benchmarks never
# use it (they run their own Orthanc with a generated configuration on ports of their own);
# stop the one this script just installed so that it does not compete for the CPU.
case "$missing" in
    *" orthanc "* | *" orthanc") $sudo service orthanc stop >/dev/null 2>&1 || true ;;
esac
