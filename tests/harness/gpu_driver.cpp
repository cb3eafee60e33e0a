#include "harness/gpu_driver.h"

#include <algorithm>
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

namespace {
ResourceFlush fenced_flush(uint32_t id, Rect r, uint64_t fence)
{
    ResourceFlush c {};
    c.hdr = header(CtrlType::ResourceFlush);
    c.hdr.flags = FLAG_FENCE;
    c.hdr.fence_id = fence;
    c.r = r;
    c.resource_id = id;
    return c;
}
} // namespace

CtrlHdr GpuDriver::flush_fenced(uint32_t id, Rect r, uint64_t fence)
{
    return command_struct(fenced_flush(id, r, fence));
}

uint64_t GpuDriver::submit_flush_fenced(uint32_t id, Rect r, uint64_t fence)
{
    auto c = fenced_flush(id, r, fence);
    auto& ram = m_session.ram();
    uint64_t request = ram.alloc(sizeof(c));
    ram.put(request, c);
    uint64_t response = ram.alloc(sizeof(CtrlHdr));
    m_session.control().add(
        { { request, uint32_t(sizeof(c)), false }, { response, uint32_t(sizeof(CtrlHdr)), true } });
    m_session.control().notify_kick();
    return response;
}

CtrlHdr GpuDriver::create_blob(uint32_t id, uint64_t size, std::span<const MemEntry> entries,
    uint32_t blob_mem, uint32_t flags, std::optional<uint32_t> nr_entries)
{
    ResourceCreateBlob c {};
    c.hdr = header(CtrlType::ResourceCreateBlob);
    c.resource_id = id;
    c.blob_mem = blob_mem;
    c.blob_flags = flags;
    c.nr_entries = nr_entries.value_or(uint32_t(entries.size()));
    c.size = size;
    std::vector<std::byte> bytes;
    append(bytes, c);
    for (const auto& e : entries)
        append(bytes, e);
    return command(bytes);
}

CtrlHdr GpuDriver::set_scanout_blob(uint32_t scanout, uint32_t id, uint32_t width, uint32_t height,
    uint32_t format, uint32_t stride, uint32_t offset, Rect r)
{
    SetScanoutBlob c {};
    c.hdr = header(CtrlType::SetScanoutBlob);
    c.r = r;
    c.scanout_id = scanout;
    c.resource_id = id;
    c.width = width;
    c.height = height;
    c.format = format;
    c.strides[0] = stride;
    c.offsets[0] = offset;
    return command_struct(c);
}

namespace {
constexpr uint64_t PAGE = 4096;

// Calls f(gpa, offset in the chunk, length) for the pieces of [offset, offset + length).
template <typename F>
void for_each_piece(const std::vector<MemEntry>& entries, uint64_t offset, uint64_t length, F f)
{
    uint64_t start = 0;
    for (const auto& e : entries) {
        uint64_t begin = std::max(offset, start), end = std::min(offset + length, start + e.length);
        if (begin < end)
            f(e.addr + (begin - start), begin - offset, end - begin);
        start += e.length;
    }
}
} // namespace

void ScatteredBuffer::write(
    const GuestRam& ram, uint64_t offset, std::span<const std::byte> bytes) const
{
    for_each_piece(entries, offset, bytes.size(),
        [&](uint64_t gpa, uint64_t at, uint64_t n) { ram.write(gpa, bytes.subspan(at, n)); });
}

std::vector<std::byte> ScatteredBuffer::read(
    const GuestRam& ram, uint64_t offset, uint64_t length) const
{
    std::vector<std::byte> out(length);
    for_each_piece(entries, offset, length, [&](uint64_t gpa, uint64_t at, uint64_t n) {
        ram.read(gpa, std::span(out).subspan(at, n));
    });
    return out;
}

ScatteredBuffer ScatteredBuffer::allocate(GuestRam& ram, uint64_t size, uint32_t seed)
{
    ScatteredBuffer buffer;
    buffer.size = (size + PAGE - 1) / PAGE * PAGE;
    uint64_t pages = buffer.size / PAGE;
    uint32_t state = seed * 2654435761u + 1;
    auto next = [&] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    // Runs of one to three pages, each at the start of its own block of four pages (so runs
    // never touch), the blocks in shuffled order.
    std::vector<uint64_t> runs;
    for (uint64_t done = 0; done < pages;) {
        runs.push_back(std::min<uint64_t>(1 + next() % 3, pages - done));
        done += runs.back();
    }
    uint64_t blocks = runs.size();
    uint64_t pool = ram.alloc(blocks * 4 * PAGE, PAGE);
    std::vector<uint64_t> order(blocks);
    for (uint64_t i = 0; i < blocks; ++i)
        order[i] = i;
    for (uint64_t i = blocks; i > 1; --i)
        std::swap(order[i - 1], order[next() % i]);
    for (uint64_t i = 0; i < blocks; ++i)
        buffer.entries.push_back(
            MemEntry { pool + order[i] * 4 * PAGE, uint32_t(runs[i] * PAGE), 0 });
    return buffer;
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
