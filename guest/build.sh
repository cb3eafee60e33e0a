#!/usr/bin/env bash
# Builds the vgpu-display test guest from Debian packages, cached and idempotent:
#   - the kernel: bookworm's own linux-image 6.1 (not backports' 6.12), downloaded with
#     apt-get download and unpacked with dpkg-deb -x, never installed;
#   - an initramfs: busybox-static, guest/init, the virtio-gpu module and its dependencies,
#     and the static test program built from guest/programs/drmtest.c;
#   - in it too, the guest's own virtio-gpu module with guest/patches applied (force_blob),
#     built from linux-source-6.1 for exactly the kernel's version (loaded with vgpu.blob=1).
#
#   guest/build.sh [CACHE_DIR]     (default: $VGPU_GUEST_CACHE, else <repo>/build/guest)
#
# Environment: VGPU_GUEST_KERNEL_VERSION=6.1.x-y pins linux-image-amd64 to that version;
# VGPU_GUEST_BZIMAGE=1 makes GUEST_KERNEL the bzImage rather than the extracted vmlinux;
# VGPU_GUEST_QUIET=1 keeps stderr quiet on success.
# The last line of stdout on success is
#   GUEST_KERNEL=<path> GUEST_INITRD=<path>
# and CACHE_DIR/guest.env holds the same as shell assignments, plus GUEST_VMLINUZ (the bzImage),
# GUEST_KVER and GUEST_KERNEL_PACKAGE. GUEST_KERNEL is the uncompressed vmlinux (PVH boot).
# On failure: exit 1 and one line "guest/build.sh: <reason>" on stderr.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(dirname "$HERE")
CACHE=${1:-${VGPU_GUEST_CACHE:-$ROOT/build/guest}}
APT=(apt-get -o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root -qq)
CFLAGS=(-static -O2 -std=gnu11 -Wall -Wextra -Werror)
# virtio_input and evdev: virtio-keyboard-pci and virtio-tablet-pci as /dev/input/event* (drmtest input).
MODULES=(virtio_pci virtio_gpu virtio_input evdev)

die() { echo "guest/build.sh: $*" >&2; exit 1; }
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
log() { [ -n "${VGPU_GUEST_QUIET:-}" ] || echo "guest: $*" >&2; }

mkdir -p "$CACHE" || die "cannot create cache directory $CACHE"
CACHE=$(cd "$CACHE" && pwd)
# One build at a time per cache (parallel test runs share it).
exec 9>"$CACHE/.lock"
flock 9

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_update_once() {
    [ -z "${APT_UPDATED:-}" ] || return 0
    is_root || die "apt needs an update (apt-get update) and this is not root"
    log "apt-get update"
    "${APT[@]}" update >/dev/null 2>&1 || die "apt-get update failed"
    APT_UPDATED=1
}

# Installs packages that are not installed yet (as apt would, with the lock timeout).
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing packages (${missing[*]}): run as root, or apt-get install them"
    log "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt_update_once
        DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
            die "apt-get install ${missing[*]} failed"
    fi
}

# Prints "VERSION DEPENDS" of linux-image-amd64 from bookworm itself (bookworm, -updates or
# -security; never -backports, whose versions carry "~bpo"): the highest 6.1 one, unless
# VGPU_GUEST_KERNEL_VERSION pins it. One apt-cache call: each costs about half a second.
bookworm_kernel_meta() {
    local best="" best_depends="" version="" line
    while IFS= read -r line; do
        case "$line" in
        Version:\ *) version=${line#Version: } ;;
        Depends:\ *)
            case "$version" in *bpo*) continue ;; 6.1.*) ;; *) continue ;; esac
            if [ -n "${VGPU_GUEST_KERNEL_VERSION:-}" ]; then
                [ "$version" = "$VGPU_GUEST_KERNEL_VERSION" ] || continue
            fi
            if [ -z "$best" ] || dpkg --compare-versions "$version" gt "$best"; then
                best=$version
                best_depends=${line#Depends: }
            fi
            ;;
        esac
    done < <(apt-cache show linux-image-amd64 2>/dev/null)
    [ -z "$best" ] || echo "$best $best_depends"
}

# Sets KPKG (linux-image-6.1.0-NN-amd64), KPKG_VERSION and KVER (6.1.0-NN-amd64).
resolve_kernel() {
    local meta
    meta=$(bookworm_kernel_meta)
    if [ -z "$meta" ]; then
        apt_update_once
        meta=$(bookworm_kernel_meta)
    fi
    [ -n "$meta" ] || die "apt knows no bookworm linux-image-amd64 6.1${VGPU_GUEST_KERNEL_VERSION:+ (pinned: $VGPU_GUEST_KERNEL_VERSION)}"
    [[ $meta =~ (linux-image-6\.1\.[0-9]+-[0-9]+-amd64)\ \(=\ ([^\)]+)\) ]] ||
        die "cannot find the ABI package in linux-image-amd64's Depends: ${meta#* }"
    KPKG=${BASH_REMATCH[1]}
    KPKG_VERSION=${BASH_REMATCH[2]}
    KVER=${KPKG#linux-image-}
}

# Downloads and unpacks the kernel package into $CACHE/kernel/<package>_<version>/ (sets KDIR).
fetch_kernel() {
    KDIR=$CACHE/kernel/${KPKG}_${KPKG_VERSION}
    [ -f "$KDIR/.complete" ] && return 0
    local tmp=$KDIR.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    log "downloading $KPKG=$KPKG_VERSION"
    if ! (cd "$tmp" && "${APT[@]}" download "$KPKG=$KPKG_VERSION" >/dev/null 2>&1); then
        # Stale package lists name a version the mirror no longer has: update, resolve again.
        rm -rf "$tmp"
        [ -z "${APT_UPDATED:-}" ] || die "apt-get download $KPKG=$KPKG_VERSION failed"
        apt_update_once
        resolve_kernel
        fetch_kernel
        return 0
    fi
    log "unpacking $KPKG"
    dpkg-deb -x "$tmp"/"${KPKG}"_*.deb "$tmp/root" || die "dpkg-deb -x of $KPKG failed"
    rm -f "$tmp"/*.deb
    depmod -b "$tmp/root" "$KVER" || die "depmod for $KVER failed"
    [ -f "$tmp/root/boot/vmlinuz-$KVER" ] || die "$KPKG has no boot/vmlinuz-$KVER"
    touch "$tmp/.complete"
    rm -rf "$KDIR" && mv "$tmp" "$KDIR"
    # A point release replaced an older kernel: drop it.
    find "$CACHE/kernel" -mindepth 1 -maxdepth 1 ! -path "$KDIR" -exec rm -rf {} +
}

# The uncompressed kernel for QEMU's PVH boot, which saves the guest ~4 s of XZ decompression
# under TCG per boot (sets KERNEL; the bzImage when the kernel cannot boot that way).
pvh_kernel() {
    KERNEL=$KDIR/root/boot/vmlinuz-$KVER
    if [ ! -f "$KDIR/vmlinux" ] && [ ! -f "$KDIR/.no-pvh" ]; then
        log "extracting vmlinux (PVH boot)"
        python3 "$HERE/extract_vmlinux.py" "$KERNEL" "$KDIR/vmlinux" || touch "$KDIR/.no-pvh"
    fi
    if [ -f "$KDIR/vmlinux" ] && [ -z "${VGPU_GUEST_BZIMAGE:-}" ]; then
        KERNEL=$KDIR/vmlinux
    fi
}

# The DRM UAPI headers. Debian's linux-libc-dev leaves out include/drm (libdrm-dev ships it as
# /usr/include/libdrm): use the installed copy, else unpack libdrm-dev into the cache (sets DRM_INCLUDE).
fetch_drm_headers() {
    if [ -f /usr/include/libdrm/drm_mode.h ]; then
        DRM_INCLUDE=/usr/include/libdrm
        DRM_HEADERS_VERSION=$(dpkg-query -W -f='${Version}' libdrm-dev 2>/dev/null || echo local)
        return 0
    fi
    # The UAPI headers are stable: any unpacked copy will do, so apt is asked only the first time.
    local cached
    cached=$(find "$CACHE/drm-headers" -mindepth 2 -maxdepth 2 -name .complete 2>/dev/null | head -n 1 || true)
    if [ -n "$cached" ]; then
        cached=$(dirname "$cached")
        DRM_INCLUDE=$cached/usr/include/libdrm
        DRM_HEADERS_VERSION=${cached##*/libdrm-dev_}
        return 0
    fi
    DRM_HEADERS_VERSION=$(apt-cache policy libdrm-dev 2>/dev/null | sed -n 's/^ *Candidate: //p')
    if [ -z "$DRM_HEADERS_VERSION" ] || [ "$DRM_HEADERS_VERSION" = "(none)" ]; then
        apt_update_once
        DRM_HEADERS_VERSION=$(apt-cache policy libdrm-dev | sed -n 's/^ *Candidate: //p')
    fi
    local dir=$CACHE/drm-headers/libdrm-dev_$DRM_HEADERS_VERSION
    DRM_INCLUDE=$dir/usr/include/libdrm
    [ -f "$dir/.complete" ] && return 0
    rm -rf "$dir" && mkdir -p "$dir"
    log "downloading libdrm-dev=$DRM_HEADERS_VERSION (headers only)"
    (cd "$dir" && "${APT[@]}" download "libdrm-dev=$DRM_HEADERS_VERSION" >/dev/null 2>&1) ||
        die "apt-get download libdrm-dev=$DRM_HEADERS_VERSION failed"
    dpkg-deb -x "$dir"/libdrm-dev_*.deb "$dir" || die "dpkg-deb -x of libdrm-dev failed"
    rm -f "$dir"/*.deb
    touch "$dir/.complete"
}

# The guest's own virtio_gpu module with guest/patches applied (force_blob: blob resources
# without the transport feature), built from Debian's linux-source-6.1 against the headers of
# exactly the guest kernel's version: linux-source-6.1, linux-headers-<kver>,
# linux-headers-<kver minus -amd64>-common and linux-kbuild-6.1, all at $KPKG_VERSION, downloaded
# and unpacked (never installed). Cached by version and patch; sets BLOB_KO.
fetch_blob_module() {
    local key dir tmp common=${KVER%-amd64}-common
    key=$( { echo "$KPKG $KPKG_VERSION"; cat "$HERE"/patches/*.patch; } | sha256sum | cut -c1-16)
    dir=$CACHE/blob-module/${KVER}_${KPKG_VERSION}_$key
    BLOB_KO=$dir/virtio-gpu.ko
    [ -f "$dir/.complete" ] && return 0
    tmp=$dir.tmp
    rm -rf "$tmp" && mkdir -p "$tmp/root" "$tmp/src"
    local packages=("linux-source-6.1=$KPKG_VERSION" "linux-headers-$KVER=$KPKG_VERSION"
        "linux-headers-$common=$KPKG_VERSION" "linux-kbuild-6.1=$KPKG_VERSION") p
    log "downloading ${packages[*]} (the blob module)"
    for p in "${packages[@]}"; do
        if ! (cd "$tmp" && "${APT[@]}" download "$p" >/dev/null 2>&1); then
            apt_update_once
            (cd "$tmp" && "${APT[@]}" download "$p" >/dev/null 2>&1) ||
                die "the blob module needs $p (the guest kernel is $KPKG=$KPKG_VERSION): apt-get download failed"
        fi
    done
    for p in "linux-headers-$KVER" "linux-headers-$common" linux-kbuild-6.1; do
        dpkg-deb -x "$tmp/${p}_"*.deb "$tmp/root" || die "dpkg-deb -x of $p failed"
    done
    # The headers' Makefile includes the common part by its installed, absolute path.
    local headers=$tmp/root/usr/src/linux-headers-$KVER
    sed -i "s|^include /usr/src/|include $tmp/root/usr/src/|" "$headers/Makefile"
    log "unpacking drivers/gpu/drm/virtio from linux-source-6.1"
    dpkg-deb --fsys-tarfile "$tmp"/linux-source-6.1_*.deb | tar -xO ./usr/src/linux-source-6.1.tar.xz |
        tar -xJ -C "$tmp/src" --strip-components=1 linux-source-6.1/drivers/gpu/drm/virtio ||
        die "unpacking drivers/gpu/drm/virtio from linux-source-6.1=$KPKG_VERSION failed"
    rm -f "$tmp"/*.deb
    for p in "$HERE"/patches/*.patch; do
        patch -s -p1 -d "$tmp/src" <"$p" || die "$(basename "$p") does not apply to linux-source-6.1=$KPKG_VERSION"
    done
    # virtgpu_trace.h includes itself as ../../drivers/gpu/drm/virtio/virtgpu_trace.h (the
    # tree's layout): an include directory two levels below the source's root resolves it.
    mkdir -p "$tmp/src/trace/include"
    log "building virtio-gpu.ko with guest/patches for $KVER"
    make -s -C "$headers" M="$tmp/src/drivers/gpu/drm/virtio" CONFIG_DRM_VIRTIO_GPU=m \
        "ccflags-y=-I$tmp/src/drivers/gpu/drm/virtio -I$tmp/src/trace/include" -j"$(nproc)" modules \
        >"$tmp/build.log" 2>&1 || die "building the blob module failed: $(tail -n 3 "$tmp/build.log" | tr '\n' ' ')"
    local built=$tmp/src/drivers/gpu/drm/virtio/virtio-gpu.ko
    modinfo -F parm "$built" | grep -q '^force_blob:' || die "the built module has no force_blob parameter"
    modinfo -F vermagic "$built" | grep -q "^$KVER " || die "the built module is not for $KVER"
    mkdir -p "$dir"
    strip --strip-debug -o "$dir/virtio-gpu.ko.tmp" "$built"
    rm -rf "$tmp"
    mv "$dir/virtio-gpu.ko.tmp" "$BLOB_KO"
    touch "$dir/.complete"
    find "$CACHE/blob-module" -mindepth 1 -maxdepth 1 ! -path "$dir" -exec rm -rf {} +
}

build_initrd() {
    local key staging modules=() line path seen=" "
    key=$( {
        echo "$KPKG $KPKG_VERSION $DRM_HEADERS_VERSION ${CFLAGS[*]} ${MODULES[*]}"
        sha256sum "$BLOB_KO"
        dpkg-query -W -f='${Version}\n' busybox-static gcc libc6-dev
        cat "$HERE/build.sh" "$HERE/init" "$HERE/mkcpio.py" "$HERE"/programs/*.c
    } | sha256sum | cut -c1-16)
    IDIR=$CACHE/initrd/$key
    [ -f "$IDIR/.complete" ] && return 0
    log "building the initramfs ($key)"
    rm -rf "$IDIR" && mkdir -p "$IDIR"
    staging=$IDIR/root
    mkdir -p "$staging"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc/vgpu,lib/modules/"$KVER"}

    gcc "${CFLAGS[@]}" -I"$DRM_INCLUDE" -o "$staging/bin/drmtest" "$HERE/programs/drmtest.c" ||
        die "compiling guest/programs/drmtest.c failed"
    cp "$staging/bin/drmtest" "$IDIR/drmtest"

    # A dynamically linked busybox would leave the guest without a working /init.
    if LC_ALL=C readelf -l /bin/busybox 2>/dev/null | grep -q 'program interpreter'; then
        die "/bin/busybox is dynamically linked: install busybox-static"
    fi
    cp /bin/busybox "$staging/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list-full); do
        [ -e "$staging/$applet" ] || ln -s /bin/busybox "$staging/$applet"
    done
    install -m 0755 "$HERE/init" "$staging/init"

    # modprobe prints "insmod /path/x.ko" in load order ("builtin x" for built-in ones).
    local deps
    deps=$(modprobe -d "$KDIR/root" -S "$KVER" -a --show-depends "${MODULES[@]}") ||
        die "modprobe --show-depends ${MODULES[*]} failed for $KVER"
    while read -r line; do
        [[ $line == insmod\ * ]] || continue
        path=${line#insmod }
        path=${path%% *}
        path=${path#"$KDIR/root/"}
        [[ $seen == *" $path "* ]] && continue
        seen+="$path "
        mkdir -p "$staging/$(dirname "$path")"
        cp "$KDIR/root/$path" "$staging/$path"
        modules+=("$path")
    done <<<"$deps"
    [ ${#modules[@]} -gt 0 ] || die "no modules resolved for ${MODULES[*]}"
    printf '%s\n' "${modules[@]}" >"$staging/etc/vgpu/modules"
    # The patched virtio_gpu, loaded instead of the stock one with vgpu.blob=1 (guest/init).
    mkdir -p "$staging/lib/modules/vgpu-blob"
    cp "$BLOB_KO" "$staging/lib/modules/vgpu-blob/virtio-gpu.ko"

    python3 "$HERE/mkcpio.py" "$staging" "$IDIR/initrd.cpio" --node dev/console:c:5:1 --node dev/null:c:1:3 ||
        die "writing the initramfs cpio failed"
    gzip -n -6 <"$IDIR/initrd.cpio" >"$IDIR/initrd.img" || die "gzip failed"
    rm -f "$IDIR/initrd.cpio"
    rm -rf "$staging"
    touch "$IDIR/.complete"
    find "$CACHE/initrd" -mindepth 1 -maxdepth 1 ! -path "$IDIR" -exec rm -rf {} +
}

apt_install busybox-static kmod gcc libc6-dev python3 make patch xz-utils binutils
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
resolve_kernel
fetch_kernel
pvh_kernel
fetch_drm_headers
fetch_blob_module
build_initrd

INITRD=$IDIR/initrd.img
cat >"$CACHE/guest.env.tmp" <<ENV
GUEST_KERNEL=$KERNEL
GUEST_INITRD=$INITRD
GUEST_VMLINUZ=$KDIR/root/boot/vmlinuz-$KVER
GUEST_KVER=$KVER
GUEST_KERNEL_PACKAGE=$KPKG=$KPKG_VERSION
ENV
mv "$CACHE/guest.env.tmp" "$CACHE/guest.env"
log "kernel $KPKG=$KPKG_VERSION, initramfs $(du -h "$INITRD" | cut -f1)"
echo "GUEST_KERNEL=$KERNEL GUEST_INITRD=$INITRD"
