#!/usr/bin/env bash
# cmake --install into a scratch prefix: the binary and the discovery file land where libvirt looks
# (PREFIX/share/qemu/vhost-user), the file sorts before Debian's 50-qemu-gpu.json, its JSON is valid
# and names the installed binary by absolute path, and that binary answers --print-capabilities;
# the example configuration file is installed and accepted; vgpu-vnc's page and noVNC are installed.
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
# vgpu-vnc and its browser view: the page and noVNC's modules where the installed vgpu-vnc
# looks for them (share/vgpu-display/web beside bin/), as files, not links into the source tree.
[ -x "$prefix/bin/vgpu-vnc" ] || { echo "no $prefix/bin/vgpu-vnc"; exit 1; }
# Consumers live in their own processes: the backend links no VNC (or SDL) library.
if ldd "$binary" | grep -E 'libvnc|libSDL'; then echo "the backend links a consumer's library"; exit 1; fi
ldd "$prefix/bin/vgpu-vnc" | grep -q libvncserver || { echo "vgpu-vnc does not link libvncserver"; exit 1; }
for f in index.html novnc/core/rfb.js novnc/vendor/pako/lib/zlib/inflate.js; do
    [ -f "$prefix/share/vgpu-display/web/$f" ] && [ ! -L "$prefix/share/vgpu-display/web/$f" ] ||
        { echo "the browser view's $f is not installed in $prefix/share/vgpu-display/web"; exit 1; }
done
echo "1 passed, 0 failed"
