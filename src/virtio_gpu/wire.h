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

// struct virtio_gpu_rect.
struct Rect {
    uint32_t x;
    uint32_t y;
    uint32_t width;
    uint32_t height;
};
static_assert(sizeof(Rect) == 16);

// VIRTIO_GPU_CMD_GET_DISPLAY_INFO response: struct virtio_gpu_resp_display_info.
struct DisplayOne {
    Rect r;
    uint32_t enabled;
    uint32_t flags;
};
struct RespDisplayInfo {
    CtrlHdr hdr;
    DisplayOne pmodes[MAX_SCANOUTS];
};
static_assert(sizeof(RespDisplayInfo) == 408 && std::is_trivially_copyable_v<RespDisplayInfo>);

// struct virtio_gpu_resource_create_2d.
struct ResourceCreate2d {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t format;
    uint32_t width;
    uint32_t height;
};
static_assert(sizeof(ResourceCreate2d) == 40);

// struct virtio_gpu_resource_unref.
struct ResourceUnref {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t padding;
};
static_assert(sizeof(ResourceUnref) == 32);

// struct virtio_gpu_set_scanout.
struct SetScanout {
    CtrlHdr hdr;
    Rect r;
    uint32_t scanout_id;
    uint32_t resource_id;
};
static_assert(sizeof(SetScanout) == 48);

// struct virtio_gpu_resource_flush.
struct ResourceFlush {
    CtrlHdr hdr;
    Rect r;
    uint32_t resource_id;
    uint32_t padding;
};
static_assert(sizeof(ResourceFlush) == 48);

// struct virtio_gpu_transfer_to_host_2d.
struct TransferToHost2d {
    CtrlHdr hdr;
    Rect r;
    uint64_t offset;
    uint32_t resource_id;
    uint32_t padding;
};
static_assert(sizeof(TransferToHost2d) == 56);

// struct virtio_gpu_resource_attach_backing, followed by nr_entries struct virtio_gpu_mem_entry.
struct ResourceAttachBacking {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t nr_entries;
};
static_assert(sizeof(ResourceAttachBacking) == 32);

struct MemEntry {
    uint64_t addr;
    uint32_t length;
    uint32_t padding;
};
static_assert(sizeof(MemEntry) == 16);

// struct virtio_gpu_resource_detach_backing.
struct ResourceDetachBacking {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t padding;
};
static_assert(sizeof(ResourceDetachBacking) == 32);

// struct virtio_gpu_get_capset_info / resp.
struct GetCapsetInfo {
    CtrlHdr hdr;
    uint32_t capset_index;
    uint32_t padding;
};
static_assert(sizeof(GetCapsetInfo) == 32);
struct RespCapsetInfo {
    CtrlHdr hdr;
    uint32_t capset_id;
    uint32_t capset_max_version;
    uint32_t capset_max_size;
    uint32_t padding;
};
static_assert(sizeof(RespCapsetInfo) == 40);

// struct virtio_gpu_get_capset.
struct GetCapset {
    CtrlHdr hdr;
    uint32_t capset_id;
    uint32_t capset_version;
};
static_assert(sizeof(GetCapset) == 32);

// struct virtio_gpu_cmd_get_edid / virtio_gpu_resp_edid.
struct GetEdid {
    CtrlHdr hdr;
    uint32_t scanout;
    uint32_t padding;
};
static_assert(sizeof(GetEdid) == 32);
struct RespEdid {
    CtrlHdr hdr;
    uint32_t size;
    uint32_t padding;
    uint8_t edid[1024];
};
static_assert(sizeof(RespEdid) == 1056);

// struct virtio_gpu_resource_assign_uuid / resp.
struct ResourceAssignUuid {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t padding;
};
static_assert(sizeof(ResourceAssignUuid) == 32);
struct RespResourceUuid {
    CtrlHdr hdr;
    uint8_t uuid[16];
};
static_assert(sizeof(RespResourceUuid) == 40);

// struct virtio_gpu_resource_create_blob, followed by nr_entries struct virtio_gpu_mem_entry.
constexpr uint32_t BLOB_MEM_GUEST = 1;
constexpr uint32_t BLOB_MEM_HOST3D = 2;
constexpr uint32_t BLOB_MEM_HOST3D_GUEST = 3;
constexpr uint32_t BLOB_FLAG_USE_MAPPABLE = 1;
constexpr uint32_t BLOB_FLAG_USE_SHAREABLE = 2;
constexpr uint32_t BLOB_FLAG_USE_CROSS_DEVICE = 4;
struct ResourceCreateBlob {
    CtrlHdr hdr;
    uint32_t resource_id;
    uint32_t blob_mem;
    uint32_t blob_flags;
    uint32_t nr_entries;
    uint64_t blob_id;
    uint64_t size;
};
static_assert(sizeof(ResourceCreateBlob) == 56 && std::is_trivially_copyable_v<ResourceCreateBlob>);

// struct virtio_gpu_set_scanout_blob.
struct SetScanoutBlob {
    CtrlHdr hdr;
    Rect r;
    uint32_t scanout_id;
    uint32_t resource_id;
    uint32_t width;
    uint32_t height;
    uint32_t format;
    uint32_t padding;
    uint32_t strides[4];
    uint32_t offsets[4];
};
static_assert(sizeof(SetScanoutBlob) == 96 && std::is_trivially_copyable_v<SetScanoutBlob>);

// struct virtio_gpu_cursor_pos and virtio_gpu_update_cursor (cursor queue).
struct CursorPos {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
    uint32_t padding;
};
struct UpdateCursor {
    CtrlHdr hdr;
    CursorPos pos;
    uint32_t resource_id;
    uint32_t hot_x;
    uint32_t hot_y;
    uint32_t padding;
};
static_assert(sizeof(UpdateCursor) == 56);

// Formats (enum virtio_gpu_formats).
enum class Format : uint32_t {
    B8G8R8A8Unorm = 1,
    B8G8R8X8Unorm = 2,
    A8R8G8B8Unorm = 3,
    X8R8G8B8Unorm = 4,
    R8G8B8A8Unorm = 67,
    X8B8G8R8Unorm = 68,
    A8B8G8R8Unorm = 121,
    R8G8B8X8Unorm = 134,
};

constexpr uint32_t CURSOR_SIZE = 64;

} // namespace vgpu::virtio_gpu
