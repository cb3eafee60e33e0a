// The vhost-user-gpu display protocol (QEMU docs/interop/vhost-user-gpu.rst): backend -> QEMU on
// the socket QEMU hands over with GPU_SET_SOCKET. Native byte order, packed structs.
#pragma once

#include <cstdint>

namespace vgpu::display::qemu {

enum class GpuRequest : uint32_t {
    GetProtocolFeatures = 1,
    SetProtocolFeatures = 2,
    GetDisplayInfo = 3,
    CursorPos = 4,
    CursorPosHide = 5,
    CursorUpdate = 6,
    Scanout = 7,
    Update = 8,
    DmabufScanout = 9,
    DmabufUpdate = 10,
    GetEdid = 11,
    DmabufScanout2 = 12,
};

struct GpuHeader {
    uint32_t request;
    uint32_t flags; // bit 2: reply
    uint32_t size;
};
static_assert(sizeof(GpuHeader) == 12);

constexpr uint32_t GPU_FLAG_REPLY = 1u << 2;
// Protocol feature bits (vhost-user-gpu.rst).
constexpr unsigned GPU_PF_EDID = 0;
constexpr unsigned GPU_PF_DMABUF2 = 1;
// A reply larger than this is a broken peer (the largest, GET_EDID's, is 1056 + 12 bytes).
constexpr uint32_t GPU_MAX_REPLY = 4096;

} // namespace vgpu::display::qemu
