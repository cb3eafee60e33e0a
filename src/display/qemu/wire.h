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

// VhostUserGpuCursorPos: CURSOR_POS, CURSOR_POS_HIDE.
struct GpuCursorPos {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
};
static_assert(sizeof(GpuCursorPos) == 12);

// VhostUserGpuCursorUpdate: CURSOR_UPDATE.
struct GpuCursorUpdate {
    GpuCursorPos pos;
    uint32_t hot_x;
    uint32_t hot_y;
    uint32_t data[64 * 64];
};
static_assert(sizeof(GpuCursorUpdate) == 12 + 8 + 16384);

// VhostUserGpuScanout: SCANOUT (0x0 disables).
struct GpuScanout {
    uint32_t scanout_id;
    uint32_t width;
    uint32_t height;
};
static_assert(sizeof(GpuScanout) == 12);

// VhostUserGpuUpdate: UPDATE, followed by width * height x8r8g8b8 pixels, stride width * 4.
struct GpuUpdate {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
    uint32_t width;
    uint32_t height;
};
static_assert(sizeof(GpuUpdate) == 20);

// VhostUserGpuDMABUFScanout: DMABUF_SCANOUT (with an fd; without one it disables the scanout),
// and VhostUserGpuDMABUFScanout2 (DMABUF_SCANOUT2, protocol feature DMABUF2) with the modifier.
struct GpuDmabufScanout {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
    uint32_t width;
    uint32_t height;
    uint32_t fd_width;
    uint32_t fd_height;
    uint32_t fd_stride;
    uint32_t fd_flags;
    int32_t fd_drm_fourcc;
};
static_assert(sizeof(GpuDmabufScanout) == 40);
#pragma pack(push, 1)
struct GpuDmabufScanout2 {
    GpuDmabufScanout dmabuf_scanout;
    uint64_t modifier;
};
#pragma pack(pop)
static_assert(sizeof(GpuDmabufScanout2) == 48);
constexpr uint64_t DRM_FORMAT_MOD_LINEAR = 0;

// VhostUserGpuEdidRequest: GET_EDID.
struct GpuEdidRequest {
    uint32_t scanout_id;
};

} // namespace vgpu::display::qemu
