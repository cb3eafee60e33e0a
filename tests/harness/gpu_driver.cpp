#include "harness/gpu_driver.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace vgpu::harness {

using namespace virtio_gpu;

namespace {

CtrlHdr header(CtrlType type)
{
    CtrlHdr h {};
    h.type = uint32_t(type);
    return h;
}

template <typename T>
void append(std::vector<std::byte>& out, const T& value)
{
    auto bytes = std::as_bytes(std::span(&value, 1));
    out.insert(out.end(), bytes.begin(), bytes.end());
}

template <typename T>
std::optional<T> response_as(const std::optional<std::vector<std::byte>>& response)
{
    if (!response || response->size() != sizeof(T))
        return std::nullopt;
    T value;
    std::memcpy(&value, response->data(), sizeof(T));
    return value;
}

} // namespace

std::optional<std::vector<std::byte>> GpuDriver::submit(
    std::span<const std::byte> command, uint32_t response_size)
{
    return m_session.control_round_trip(command, response_size);
}

CtrlHdr GpuDriver::command(std::span<const std::byte> bytes)
{
    return response_as<CtrlHdr>(submit(bytes)).value_or(CtrlHdr {});
}

CtrlHdr GpuDriver::create_2d(uint32_t id, uint32_t width, uint32_t height, uint32_t format)
{
    ResourceCreate2d c {};
    c.hdr = header(CtrlType::ResourceCreate2d);
    c.resource_id = id;
    c.format = format;
    c.width = width;
    c.height = height;
    return command_struct(c);
}

CtrlHdr GpuDriver::unref(uint32_t id)
{
    ResourceUnref c {};
    c.hdr = header(CtrlType::ResourceUnref);
    c.resource_id = id;
    return command_struct(c);
}

CtrlHdr GpuDriver::attach_backing(
    uint32_t id, std::span<const MemEntry> entries, std::optional<uint32_t> nr_entries)
{
    ResourceAttachBacking c {};
    c.hdr = header(CtrlType::ResourceAttachBacking);
    c.resource_id = id;
    c.nr_entries = nr_entries.value_or(uint32_t(entries.size()));
    std::vector<std::byte> bytes;
    append(bytes, c);
    for (const auto& e : entries)
        append(bytes, e);
    return command(bytes);
}

CtrlHdr GpuDriver::detach_backing(uint32_t id)
{
    ResourceDetachBacking c {};
    c.hdr = header(CtrlType::ResourceDetachBacking);
    c.resource_id = id;
    return command_struct(c);
}

CtrlHdr GpuDriver::transfer(uint32_t id, Rect r, uint64_t offset)
{
    TransferToHost2d c {};
    c.hdr = header(CtrlType::TransferToHost2d);
    c.r = r;
    c.offset = offset;
    c.resource_id = id;
    return command_struct(c);
}

CtrlHdr GpuDriver::set_scanout(uint32_t scanout, uint32_t id, Rect r)
{
    SetScanout c {};
    c.hdr = header(CtrlType::SetScanout);
    c.r = r;
    c.scanout_id = scanout;
    c.resource_id = id;
    return command_struct(c);
}

CtrlHdr GpuDriver::flush(uint32_t id, Rect r)
{
    ResourceFlush c {};
    c.hdr = header(CtrlType::ResourceFlush);
    c.r = r;
    c.resource_id = id;
    return command_struct(c);
}

CtrlHdr GpuDriver::simple(uint32_t type, size_t size)
{
    std::vector<std::byte> bytes(std::max(size, sizeof(CtrlHdr)));
    CtrlHdr h {};
    h.type = type;
    std::memcpy(bytes.data(), &h, sizeof(h));
    bytes.resize(size);
    return command(bytes);
}

std::optional<RespDisplayInfo> GpuDriver::get_display_info()
{
    auto h = header(CtrlType::GetDisplayInfo);
    return response_as<RespDisplayInfo>(
        submit(std::as_bytes(std::span(&h, 1)), sizeof(RespDisplayInfo)));
}

std::optional<RespEdid> GpuDriver::get_edid(uint32_t scanout)
{
    GetEdid c {};
    c.hdr = header(CtrlType::GetEdid);
    c.scanout = scanout;
    auto response = submit(std::as_bytes(std::span(&c, 1)), sizeof(RespEdid));
    // An error answer is a bare header: hand it back in an otherwise empty RespEdid.
    if (response && response->size() == sizeof(CtrlHdr)) {
        RespEdid error {};
        std::memcpy(&error.hdr, response->data(), sizeof(CtrlHdr));
        return error;
    }
    return response_as<RespEdid>(response);
}

uint64_t GpuDriver::create_with_backing(uint32_t id, uint32_t width, uint32_t height,
    uint32_t format, std::span<const std::byte> pixels)
{
    auto expect_ok = [&](const CtrlHdr& h, const char* what) {
        if (h.type != uint32_t(CtrlType::OkNodata))
            throw std::runtime_error(
                std::string("GpuDriver: ") + what + " failed with " + std::to_string(h.type));
    };
    uint64_t size = uint64_t(width) * height * 4;
    if (!pixels.empty() && pixels.size() != size)
        throw std::runtime_error("GpuDriver: pixels do not match the resource size");
    expect_ok(create_2d(id, width, height, format), "RESOURCE_CREATE_2D");
    uint64_t gpa = m_session.ram().alloc(size, 4096);
    if (!pixels.empty())
        m_session.ram().write(gpa, pixels);
    MemEntry entry { gpa, uint32_t(size), 0 };
    expect_ok(attach_backing(id, std::span(&entry, 1)), "RESOURCE_ATTACH_BACKING");
    return gpa;
}

std::optional<uint32_t> GpuDriver::update_cursor(
    uint32_t scanout, uint32_t id, uint32_t x, uint32_t y, uint32_t hot_x, uint32_t hot_y)
{
    UpdateCursor c {};
    c.hdr = header(CtrlType::UpdateCursor);
    c.pos = { scanout, x, y, 0 };
    c.resource_id = id;
    c.hot_x = hot_x;
    c.hot_y = hot_y;
    auto used = m_session.cursor_round_trip(std::as_bytes(std::span(&c, 1)));
    if (!used)
        return std::nullopt;
    return used->length;
}

std::optional<uint32_t> GpuDriver::move_cursor(uint32_t scanout, uint32_t x, uint32_t y)
{
    UpdateCursor c {};
    c.hdr = header(CtrlType::MoveCursor);
    c.pos = { scanout, x, y, 0 };
    auto used = m_session.cursor_round_trip(std::as_bytes(std::span(&c, 1)));
    if (!used)
        return std::nullopt;
    return used->length;
}

} // namespace vgpu::harness
