#include "virtio_gpu/command.h"

#include <algorithm>
#include <new>
#include <optional>

#include "base/log.h"

namespace vgpu::virtio_gpu {

const char* command_name(uint32_t type)
{
    switch (static_cast<CtrlType>(type)) {
    case CtrlType::GetDisplayInfo:
        return "GET_DISPLAY_INFO";
    case CtrlType::ResourceCreate2d:
        return "RESOURCE_CREATE_2D";
    case CtrlType::ResourceUnref:
        return "RESOURCE_UNREF";
    case CtrlType::SetScanout:
        return "SET_SCANOUT";
    case CtrlType::ResourceFlush:
        return "RESOURCE_FLUSH";
    case CtrlType::TransferToHost2d:
        return "TRANSFER_TO_HOST_2D";
    case CtrlType::ResourceAttachBacking:
        return "RESOURCE_ATTACH_BACKING";
    case CtrlType::ResourceDetachBacking:
        return "RESOURCE_DETACH_BACKING";
    case CtrlType::GetCapsetInfo:
        return "GET_CAPSET_INFO";
    case CtrlType::GetCapset:
        return "GET_CAPSET";
    case CtrlType::GetEdid:
        return "GET_EDID";
    case CtrlType::ResourceAssignUuid:
        return "RESOURCE_ASSIGN_UUID";
    case CtrlType::ResourceCreateBlob:
        return "RESOURCE_CREATE_BLOB";
    case CtrlType::SetScanoutBlob:
        return "SET_SCANOUT_BLOB";
    case CtrlType::UpdateCursor:
        return "UPDATE_CURSOR";
    case CtrlType::MoveCursor:
        return "MOVE_CURSOR";
    default:
        return "UNKNOWN";
    }
}

namespace {

// Reads the rest of struct T, whose first member is the already-read header.
template <typename T>
GpuResult<T> read_rest(const CtrlHdr& header, virtio::Reader& reader)
{
    T value {};
    value.hdr = header;
    auto rest = std::as_writable_bytes(std::span(&value, 1)).subspan(sizeof(CtrlHdr));
    if (auto r = reader.read(rest); !r) {
        VGPU_LOG_GUEST(Debug, "{}: {}", command_name(header.type), r.error().message);
        return GpuError::Unspec;
    }
    return value;
}

#define READ(T)                                                                                    \
    ({                                                                                             \
        auto _r = read_rest<T>(header, reader);                                                    \
        if (!_r.has_value())                                                                       \
            return _r.release_error();                                                             \
        _r.release_value();                                                                        \
    })

// The memory entries after ATTACH_BACKING or CREATE_BLOB. nullopt for bad entries (too many,
// more than the buffer holds): the handler's ERR_UNSPEC, after its resource checks (QEMU looks
// the resource up before it reads the entries).
GpuResult<std::optional<std::vector<MemEntry>>> read_entries(
    const CtrlHdr& header, uint32_t nr_entries, virtio::Reader& reader)
{
    if (nr_entries > MAX_BACKING_ENTRIES) {
        VGPU_LOG_GUEST(Debug, "{}: {} entries exceed {}", command_name(header.type), nr_entries,
            MAX_BACKING_ENTRIES);
        return std::optional<std::vector<MemEntry>> {};
    }
    // Checked against what the buffer holds before allocating anything.
    if (uint64_t(nr_entries) * sizeof(MemEntry) > reader.remaining()) {
        VGPU_LOG_GUEST(Debug, "{}: {} entries but {} bytes left", command_name(header.type),
            nr_entries, reader.remaining());
        return std::optional<std::vector<MemEntry>> {};
    }
    // Sized by the guest (at most 256 KiB, and only for this command): fallible all the same.
    std::vector<MemEntry> entries;
    try {
        entries.resize(nr_entries);
    } catch (const std::bad_alloc&) {
        return GpuError::OutOfMemory;
    }
    if (!reader.read(std::as_writable_bytes(std::span(entries))))
        return std::optional<std::vector<MemEntry>> {};
    return std::optional(std::move(entries));
}

GpuResult<GpuCommand> decode_attach_backing(const CtrlHdr& header, virtio::Reader& reader)
{
    auto c = READ(ResourceAttachBacking);
    auto entries = read_entries(header, c.nr_entries, reader);
    if (!entries)
        return entries.release_error();
    if (!*entries)
        return cmd::ResourceAttachBacking { c.resource_id, {}, false };
    return cmd::ResourceAttachBacking { c.resource_id, std::move(**entries) };
}

GpuResult<GpuCommand> decode_create_blob(const CtrlHdr& header, virtio::Reader& reader)
{
    auto c = READ(ResourceCreateBlob);
    auto entries = read_entries(header, c.nr_entries, reader);
    if (!entries)
        return entries.release_error();
    cmd::ResourceCreateBlob blob { c.resource_id, c.blob_mem, c.blob_flags, c.blob_id, c.size, {},
        entries->has_value() };
    if (*entries)
        blob.entries = std::move(**entries);
    return blob;
}

GpuResult<GpuCommand> decode_set_scanout_blob(const CtrlHdr& header, virtio::Reader& reader)
{
    auto c = READ(SetScanoutBlob);
    cmd::SetScanoutBlob s { c.r, c.scanout_id, c.resource_id, c.width, c.height, c.format, {}, {} };
    std::copy(std::begin(c.strides), std::end(c.strides), s.strides);
    std::copy(std::begin(c.offsets), std::end(c.offsets), s.offsets);
    return s;
}

} // namespace

GpuResult<GpuCommand> decode_body(const CtrlHdr& header, virtio::Reader& reader, bool blob)
{
    switch (static_cast<CtrlType>(header.type)) {
    case CtrlType::GetDisplayInfo:
        return cmd::GetDisplayInfo {};
    case CtrlType::ResourceCreate2d: {
        auto c = READ(ResourceCreate2d);
        return cmd::ResourceCreate2d { c.resource_id, c.format, c.width, c.height };
    }
    case CtrlType::ResourceUnref:
        return cmd::ResourceUnref { READ(ResourceUnref).resource_id };
    case CtrlType::SetScanout: {
        auto c = READ(SetScanout);
        return cmd::SetScanout { c.r, c.scanout_id, c.resource_id };
    }
    case CtrlType::ResourceFlush: {
        auto c = READ(ResourceFlush);
        return cmd::ResourceFlush { c.r, c.resource_id };
    }
    case CtrlType::TransferToHost2d: {
        auto c = READ(TransferToHost2d);
        return cmd::TransferToHost2d { c.r, c.offset, c.resource_id };
    }
    case CtrlType::ResourceAttachBacking:
        return decode_attach_backing(header, reader);
    case CtrlType::ResourceDetachBacking:
        return cmd::ResourceDetachBacking { READ(ResourceDetachBacking).resource_id };
    case CtrlType::GetCapsetInfo:
        return cmd::GetCapsetInfo { READ(GetCapsetInfo).capset_index };
    case CtrlType::GetCapset: {
        auto c = READ(GetCapset);
        return cmd::GetCapset { c.capset_id, c.capset_version };
    }
    case CtrlType::GetEdid:
        return cmd::GetEdid { READ(GetEdid).scanout };
    case CtrlType::UpdateCursor: {
        auto c = READ(UpdateCursor);
        return cmd::UpdateCursor { c.pos, c.resource_id, c.hot_x, c.hot_y };
    }
    case CtrlType::MoveCursor:
        return cmd::MoveCursor { READ(UpdateCursor).pos };
    case CtrlType::ResourceCreateBlob:
        if (!blob)
            return cmd::Unsupported { header.type };
        return decode_create_blob(header, reader);
    case CtrlType::SetScanoutBlob:
        if (!blob)
            return cmd::Unsupported { header.type };
        return decode_set_scanout_blob(header, reader);
    case CtrlType::ResourceAssignUuid:
    case CtrlType::CtxCreate:
    case CtrlType::CtxDestroy:
    case CtrlType::CtxAttachResource:
    case CtrlType::CtxDetachResource:
    case CtrlType::ResourceCreate3d:
    case CtrlType::TransferToHost3d:
    case CtrlType::TransferFromHost3d:
    case CtrlType::Submit3d:
    case CtrlType::ResourceMapBlob:
    case CtrlType::ResourceUnmapBlob:
        return cmd::Unsupported { header.type };
    default:
        VGPU_LOG_GUEST(Debug, "unknown command type {:#x}", header.type);
        return GpuError::Unspec;
    }
}

#undef READ

GpuResult<DecodedCommand> decode(virtio::Reader& reader, bool blob)
{
    auto header = reader.read_obj<CtrlHdr>();
    if (!header) {
        VGPU_LOG_GUEST(Debug, "command shorter than its header: {}", header.error().message);
        return GpuError::Unspec;
    }
    auto body = decode_body(*header, reader, blob);
    if (!body)
        return body.release_error();
    return DecodedCommand { *header, body.release_value() };
}

} // namespace vgpu::virtio_gpu
