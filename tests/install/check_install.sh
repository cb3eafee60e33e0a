#!/usr/bin/env bash
# cmake --install into a scratch prefix: the binary and the discovery file land where libvirt looks
# (PREFIX/share/qemu/vhost-user), the file sorts before Debian's 50-qemu-gpu.json, its JSON is valid
# and names the installed binary by absolute path, and that binary answers --print-capabilities;
# the example configuration file is installed and accepted.
set -euo pipefail
build_dir=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
file=$(ls "$prefix"/share/qemu/vhost-user/*.json)
[ "$(basename "$file")" \< "50-qemu-gpu.json" ] || { echo "discovery file $file does not sort before 50-qemu-gpu.json"; exit 1; }
binary=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["type"]=="gpu", d; print(d["binary"])' "$file")
case "$binary" in /*) ;; *) echo "binary path '$binary' is not absolute"; exit 1 ;; esac
[ "$binary" = "$prefix/bin/vgpu-display" ] || { echo "binary '$binary' is not the installed $prefix/bin/vgpu-display"; exit 1; }
"$binary" --print-capabilities | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["type"]=="gpu" and d["features"]==[], d'
# The example configuration is installed, and the backend takes it as it is.
example="$prefix/share/doc/vgpu-display/vgpu-display.conf.example"
[ -f "$example" ] || { echo "no $example"; exit 1; }
VGPU_DISPLAY_CONFIG="$example" "$binary" --print-capabilities >/dev/null ||
    { echo "the installed example configuration is refused"; exit 1; }
echo "1 passed, 0 failed"
