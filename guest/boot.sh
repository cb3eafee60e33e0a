#!/usr/bin/env bash
# Boots the vgpu-display test guest under QEMU (TCG) and runs test steps in it.
#
#   guest/boot.sh --test STEPS [options] [-- QEMU_ARGS...]
#
#   --test STEPS      vgpu.test= for guest/init: STEP[,STEP...], STEP = NAME[:ARG...]
#                     (drmtest subcommands, or reboot, sleep:N, dmesg, shell)
#   --args A[,B]      vgpu.args= (arguments for steps that have none)
#   --hold S          vgpu.hold= (seconds drmtest holds each VGPU-READY frame; default 2)
#   --end WHAT        vgpu.end= poweroff (default), reboot, shell, hang
#   --timeout S       kill QEMU after S seconds (default 180; exit code 124)
#   --qmp PATH        a QMP server on the unix socket PATH (guest/qmp.py talks to it)
#   --serial FILE     the guest console to FILE instead of stdout
#   --append TEXT     more kernel command line
#   --blob            the guest's own virtio_gpu with force_blob=1 (vgpu.blob=1): blob resources
#   --memory SIZE     guest RAM (default 512M), always a shared memfd (vhost-user needs it)
#   --cache DIR       the guest cache (default $VGPU_GUEST_CACHE or build/guest)
#   --no-build        use CACHE/guest.env as it is instead of running guest/build.sh first
#   -- QEMU_ARGS      the display device and anything else; default: -device virtio-gpu-pci
#
# A step list with a reboot step lets the guest reboot (no -no-reboot); otherwise a guest
# reboot or a kernel panic (panic=-1) ends QEMU. QEMU's exit code is ours.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(dirname "$HERE")

die() { echo "guest/boot.sh: $*" >&2; exit 2; }

TEST='' ARGS='' HOLD='' END='' TIMEOUT=180 QMP='' SERIAL='' APPEND='' MEMORY=512M BUILD=1
CACHE=${VGPU_GUEST_CACHE:-$ROOT/build/guest}
while [ $# -gt 0 ]; do
    case "$1" in
    --test) TEST=${2:?}; shift 2 ;;
    --args) ARGS=${2:?}; shift 2 ;;
    --hold) HOLD=${2:?}; shift 2 ;;
    --end) END=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --qmp) QMP=${2:?}; shift 2 ;;
    --serial) SERIAL=${2:?}; shift 2 ;;
    --append) APPEND=${2:?}; shift 2 ;;
    --blob) APPEND="${APPEND:+$APPEND }vgpu.blob=1"; shift ;;
    --memory) MEMORY=${2:?}; shift 2 ;;
    --cache) CACHE=${2:?}; shift 2 ;;
    --no-build) BUILD=; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[ -n "$TEST" ] || [ "$END" = shell ] || die "--test STEPS is required"
for value in "$TEST" "$ARGS" "$HOLD" "$END"; do
    [[ $value != *[[:space:]]* ]] || die "test steps and arguments cannot contain spaces: '$value'"
done

if [ -n "$BUILD" ]; then
    VGPU_GUEST_QUIET=1 "$HERE/build.sh" "$CACHE" >/dev/null || die "guest/build.sh failed"
fi
[ -f "$CACHE/guest.env" ] || die "no $CACHE/guest.env: run guest/build.sh"
# shellcheck source=/dev/null
. "$CACHE/guest.env"

CMDLINE="console=ttyS0 quiet panic=-1 vgpu.test=$TEST"
[ -z "$ARGS" ] || CMDLINE+=" vgpu.args=$ARGS"
[ -z "$HOLD" ] || CMDLINE+=" vgpu.hold=$HOLD"
[ -z "$END" ] || CMDLINE+=" vgpu.end=$END"
[ -z "$APPEND" ] || CMDLINE+=" $APPEND"

# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
QEMU=(qemu-system-x86_64 -accel tcg -machine pc,memory-backend=mem -m "$MEMORY" -smp 1
    -object "memory-backend-memfd,id=mem,size=$MEMORY,share=on"
    -display none -nodefaults -no-user-config
    -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$CMDLINE")
if [[ ",$TEST," != *,reboot,* ]] && [ "$END" != reboot ]; then
    QEMU+=(-no-reboot)
fi
if [ -n "$SERIAL" ]; then
    QEMU+=(-serial "file:$SERIAL")
elif [ -t 0 ]; then
    QEMU+=(-serial mon:stdio)   # interactive: Ctrl-A X quits
else
    QEMU+=(-serial stdio)
fi
[ -z "$QMP" ] || QEMU+=(-qmp "unix:$QMP,server=on,wait=off")
if [ $# -gt 0 ]; then
    QEMU+=("$@")
else
    QEMU+=(-device virtio-gpu-pci)
fi

echo "guest: ${QEMU[*]}" >&2
exec timeout --foreground -k 5 "$TIMEOUT" "${QEMU[@]}"
