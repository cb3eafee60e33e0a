// Decoding a control- or cursor-queue command: the header, then the command's struct (and for
// ATTACH_BACKING its memory entries), copied out of guest memory by the Reader. Decoding happens
// once; handlers get the decoded value and never touch guest memory for the command itself.
#pragma once

#include <variant>
#include <vector>

#include "virtio/reader_writer.h"
#include "virtio_gpu/resource_table.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

// QEMU's vhost-user-gpu caps nr_entries at 16384 (vg_create_mapping_iov); so do we.
constexpr uint32_t MAX_BACKING_ENTRIES = 16384;

namespace cmd {
struct GetDisplayInfo { };
struct ResourceCreate2d {
    uint32_t resource_id, format, width, height;
};
struct ResourceUnref {
    uint32_t resource_id;
};
struct SetScanout {
    Rect r;
    uint32_t scanout_id, resource_id;
};
struct ResourceFlush {
    Rect r;
    uint32_t resource_id;
};
struct TransferToHost2d {
    Rect r;
    uint64_t offset;
    uint32_t resource_id;
};
// entries_valid is false when nr_entries was over MAX_BACKING_ENTRIES or more than the buffer
// holds: the handler answers ERR_UNSPEC, after checking the resource as QEMU does.
struct ResourceAttachBacking {
    uint32_t resource_id;
    std::vector<MemEntry> entries;
    bool entries_valid = true;
};
struct ResourceDetachBacking {
    uint32_t resource_id;
};
// As ResourceAttachBacking, entries_valid is false when nr_entries was too many for the cap or
// for the buffer: the handler answers ERR_UNSPEC after its other checks.
struct ResourceCreateBlob {
    uint32_t resource_id, blob_mem, blob_flags;
    uint64_t blob_id, size;
    std::vector<MemEntry> entries;
    bool entries_valid = true;
};
struct SetScanoutBlob {
    Rect r;
    uint32_t scanout_id, resource_id, width, height, format;
    uint32_t strides[4], offsets[4];
};
struct GetCapsetInfo {
    uint32_t capset_index;
};
struct GetCapset {
    uint32_t capset_id, capset_version;
};
struct GetEdid {
    uint32_t scanout;
};
struct UpdateCursor {
    CursorPos pos;
    uint32_t resource_id, hot_x, hot_y;
};
struct MoveCursor {
    CursorPos pos;
};
// A command we know but do not implement (3D, UUID; blob while blob resources are off).
struct Unsupported {
    uint32_t type;
};
} // namespace cmd

using GpuCommand = std::variant<cmd::GetDisplayInfo, cmd::ResourceCreate2d, cmd::ResourceUnref,
    cmd::SetScanout, cmd::ResourceFlush, cmd::TransferToHost2d, cmd::ResourceAttachBacking,
    cmd::ResourceDetachBacking, cmd::ResourceCreateBlob, cmd::SetScanoutBlob, cmd::GetCapsetInfo,
    cmd::GetCapset, cmd::GetEdid, cmd::UpdateCursor, cmd::MoveCursor, cmd::Unsupported>;

struct DecodedCommand {
    CtrlHdr header;
    GpuCommand command;
};

const char* command_name(uint32_t type);

// Decodes the command whose header was already read into `header`. ERR_UNSPEC for an unknown
// type or a buffer shorter than the command (QEMU's answers to each); bad ATTACH_BACKING
// entries are left to the handler (see cmd::ResourceAttachBacking).
// With `blob` false (RESOURCE_BLOB neither negotiated nor forced by --blob), the blob commands
// decode to cmd::Unsupported without reading their body.
GpuResult<GpuCommand> decode_body(const CtrlHdr& header, virtio::Reader& reader, bool blob = false);
// Header and body.
GpuResult<DecodedCommand> decode(virtio::Reader& reader, bool blob = false);

} // namespace vgpu::virtio_gpu
