// virtio-gpu wire structures (virtio 1.3 §5.7 "GPU Device"). Little-endian on the wire; we run on
// little-endian hosts only (checked below), so fields are plain integers.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

namespace vgpu::virtio_gpu {

static_assert(std::endian::native == std::endian::little, "virtio-gpu structs are little-endian");

// Feature bits (§5.7.3).
constexpr unsigned F_VIRGL = 0;
constexpr unsigned F_EDID = 1;
constexpr unsigned F_RESOURCE_UUID = 2;
constexpr unsigned F_RESOURCE_BLOB = 3;
constexpr unsigned F_CONTEXT_INIT = 4;

constexpr uint32_t MAX_SCANOUTS = 16;
constexpr uint32_t EVENT_DISPLAY = 1;

// struct virtio_gpu_config (§5.7.4).
struct Config {
    uint32_t events_read;
    uint32_t events_clear;
    uint32_t num_scanouts;
    uint32_t num_capsets;
};
static_assert(sizeof(Config) == 16 && std::is_trivially_copyable_v<Config>);

// enum virtio_gpu_ctrl_type (§5.7.6.7).
enum class CtrlType : uint32_t {
    // 2D commands
    GetDisplayInfo = 0x0100,
    ResourceCreate2d,
    ResourceUnref,
    SetScanout,
    ResourceFlush,
    TransferToHost2d,
    ResourceAttachBacking,
    ResourceDetachBacking,
    GetCapsetInfo,
    GetCapset,
    GetEdid,
    ResourceAssignUuid,
    ResourceCreateBlob,
    SetScanoutBlob,
    // 3D commands
    CtxCreate = 0x0200,
    CtxDestroy,
    CtxAttachResource,
    CtxDetachResource,
    ResourceCreate3d,
    TransferToHost3d,
    TransferFromHost3d,
    Submit3d,
    ResourceMapBlob,
    ResourceUnmapBlob,
    // cursor commands
    UpdateCursor = 0x0300,
    MoveCursor,
    // success responses
    OkNodata = 0x1100,
    OkDisplayInfo,
    OkCapsetInfo,
    OkCapset,
    OkEdid,
    OkResourceUuid,
    OkMapInfo,
    // error responses
    ErrUnspec = 0x1200,
    ErrOutOfMemory,
    ErrInvalidScanoutId,
    ErrInvalidResourceId,
    ErrInvalidContextId,
    ErrInvalidParameter,
};

constexpr uint32_t FLAG_FENCE = 1u << 0;
constexpr uint32_t FLAG_INFO_RING_IDX = 1u << 1;

// struct virtio_gpu_ctrl_hdr (§5.7.6.7).
struct CtrlHdr {
    uint32_t type;
    uint32_t flags;
    uint64_t fence_id;
    uint32_t ctx_id;
    uint8_t ring_idx;
    uint8_t padding[3];
};
static_assert(sizeof(CtrlHdr) == 24 && std::is_trivially_copyable_v<CtrlHdr>);

} // namespace vgpu::virtio_gpu
