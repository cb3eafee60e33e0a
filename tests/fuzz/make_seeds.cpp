// Writes the seed corpora of the fuzz targets: make_fuzz_seeds <corpus dir> writes
// <corpus dir>/fuzz_vhost_message/seed-*, <corpus dir>/fuzz_virtqueue/seed-* and
// <corpus dir>/fuzz_gpu_command/seed-*. The seeds are checked in (tests/fuzz/corpus); run this
// again after changing an input format or adding seeds.
//
// vhost messages: every request QEMU 10 sends to a vhost-user-gpu backend, valid, plus malformed
// variants of the checks decode_request makes. Virtqueues: well-formed rings (simple, indirect,
// wrapping, EVENT_IDX) and hostile ones (loops, buffers outside memory, bad indirect tables).
// GPU commands: one valid command of each type, plus bad entry counts and truncated buffers.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "export/codec.h"
#include "fuzz_virtqueue_input.h"
#include "vhost/wire.h"
#include "virtio/descriptor_chain.h"
#include "virtio_gpu/command.h"
#include "virtio_gpu/wire.h"

namespace {

using namespace vgpu;
using Bytes = std::vector<std::byte>;
namespace fs = std::filesystem;

template <typename T>
void append(Bytes& out, const T& value)
{
    auto bytes = std::as_bytes(std::span(&value, 1));
    out.insert(out.end(), bytes.begin(), bytes.end());
}

bool write_seed(const fs::path& dir, const std::string& name, const Bytes& content)
{
    std::ofstream file(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(content.data()), std::streamsize(content.size()));
    if (!file) {
        std::fprintf(stderr, "make_fuzz_seeds: cannot write %s\n", (dir / name).c_str());
        return false;
    }
    return true;
}

// ---- vhost messages: [fd count] [Header] [payload] ----

using vhost::Request;

Bytes message(
    uint8_t fd_count, Request request, const Bytes& payload, uint32_t flags = vhost::VERSION)
{
    Bytes out { std::byte(fd_count) };
    append(out, vhost::Header { uint32_t(request), flags, uint32_t(payload.size()) });
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

template <typename T>
Bytes payload_of(const T& value)
{
    Bytes out;
    append(out, value);
    return out;
}

Bytes u64(uint64_t value) { return payload_of(value); }

// QEMU's pc machine: low memory at GPA 0 and high memory at 4 GiB, from one memfd.
constexpr vhost::MemoryRegion low_region { 0, 0x80000000, 0x7f1200000000, 0 };
constexpr vhost::MemoryRegion high_region { 0x100000000, 0x40000000, 0x7f1280000000, 0x80000000 };

Bytes mem_table(uint32_t nregions)
{
    Bytes out = payload_of(vhost::MemoryTableHeader { nregions, 0 });
    for (uint32_t i = 0; i < nregions; ++i)
        append(out, i % 2 ? high_region : low_region);
    return out;
}

Bytes config(uint32_t offset, uint32_t size, uint32_t flags)
{
    Bytes out = payload_of(vhost::ConfigHeader { offset, size, flags });
    out.resize(out.size() + size);
    return out;
}

struct Seed {
    std::string name;
    Bytes content;
};

std::vector<Seed> vhost_seeds()
{
    using vhost::VringAddr;
    using vhost::VringState;
    constexpr uint64_t features = (uint64_t(1) << 32) | (uint64_t(1) << vhost::F_PROTOCOL_FEATURES)
        | (uint64_t(1) << 40) | (uint64_t(1) << 28) | (uint64_t(1) << 29);
    constexpr uint64_t protocol_features = (1u << vhost::PF_MQ) | (1u << vhost::PF_REPLY_ACK)
        | (1u << vhost::PF_BACKEND_REQ) | (1u << vhost::PF_CONFIG) | (1u << vhost::PF_RESET_DEVICE)
        | (1u << vhost::PF_CONFIGURE_MEM_SLOTS) | (1u << vhost::PF_STATUS);
    const VringAddr addr { 0, 0, 0x7f1200010000, 0x7f1200012000, 0x7f1200011000, 0 };
    const Bytes add_region = payload_of(vhost::SingleMemoryRegion { 0, high_region });
    constexpr uint32_t need_reply = vhost::VERSION | vhost::FLAG_NEED_REPLY;

    return {
        // What QEMU 10 sends, in about the order it sends it.
        { "get-features", message(0, Request::GetFeatures, {}) },
        { "get-protocol-features", message(0, Request::GetProtocolFeatures, {}) },
        { "set-protocol-features",
            message(0, Request::SetProtocolFeatures, u64(protocol_features)) },
        { "get-queue-num", message(0, Request::GetQueueNum, {}) },
        { "get-max-mem-slots", message(0, Request::GetMaxMemSlots, {}) },
        { "set-backend-req-fd", message(1, Request::SetBackendReqFd, {}, need_reply) },
        { "set-owner", message(0, Request::SetOwner, {}) },
        { "get-config-16", message(0, Request::GetConfig, config(0, 16, 0)) },
        { "set-config-events-clear", message(0, Request::SetConfig, config(4, 4, 0)) },
        { "gpu-set-socket", message(1, Request::GpuSetSocket, {}) },
        { "set-features-bit40", message(0, Request::SetFeatures, u64(features)) },
        { "set-mem-table-2-regions", message(2, Request::SetMemTable, mem_table(2), need_reply) },
        { "add-mem-reg", message(1, Request::AddMemReg, add_region, need_reply) },
        { "rem-mem-reg", message(0, Request::RemMemReg, add_region, need_reply) },
        { "rem-mem-reg-with-fd", message(1, Request::RemMemReg, add_region) },
        { "set-vring-num", message(0, Request::SetVringNum, payload_of(VringState { 0, 256 })) },
        { "set-vring-addr", message(0, Request::SetVringAddr, payload_of(addr)) },
        { "set-vring-base", message(0, Request::SetVringBase, payload_of(VringState { 1, 0 })) },
        { "set-vring-kick", message(1, Request::SetVringKick, u64(0)) },
        { "set-vring-call", message(1, Request::SetVringCall, u64(1)) },
        { "set-vring-call-nofd",
            message(0, Request::SetVringCall, u64(vhost::VRING_NOFD_MASK | 1)) },
        { "set-vring-err", message(1, Request::SetVringErr, u64(0)) },
        { "set-vring-enable",
            message(0, Request::SetVringEnable, payload_of(VringState { 0, 1 })) },
        { "set-status-driver-ok", message(0, Request::SetStatus, u64(0x0f), need_reply) },
        { "get-status", message(0, Request::GetStatus, {}) },
        { "get-vring-base", message(0, Request::GetVringBase, payload_of(VringState { 0, 0 })) },
        { "reset-device", message(0, Request::ResetDevice, {}) },
        { "reset-owner", message(0, Request::ResetOwner, {}) },
        // Malformed: framing.
        { "bad-version", message(0, Request::GetFeatures, {}, 2) },
        { "reply-flag", message(0, Request::GetFeatures, {}, vhost::VERSION | vhost::FLAG_REPLY) },
        { "oversized-payload",
            [] {
                Bytes m = message(0, Request::SetConfig, {});
                uint32_t size = vhost::MAX_PAYLOAD + 1;
                std::memcpy(m.data() + 9, &size, sizeof(size));
                return m;
            }() },
        { "truncated-payload",
            [&] {
                Bytes m = message(0, Request::SetVringAddr, payload_of(addr));
                m.resize(m.size() - 8);
                return m;
            }() },
        // Malformed: payloads and fds.
        { "get-features-with-payload", message(0, Request::GetFeatures, u64(0)) },
        { "set-features-short", message(0, Request::SetFeatures, payload_of(uint32_t(1))) },
        { "set-mem-table-0-regions", message(0, Request::SetMemTable, mem_table(0)) },
        { "set-mem-table-9-regions", message(8, Request::SetMemTable, mem_table(9)) },
        { "set-mem-table-fd-mismatch", message(1, Request::SetMemTable, mem_table(2)) },
        { "get-config-257", message(0, Request::GetConfig, config(0, 257, 0)) },
        { "get-config-size-mismatch",
            [] {
                Bytes p = config(0, 16, 0);
                p.resize(p.size() - 4);
                return message(0, Request::GetConfig, p);
            }() },
        { "set-vring-kick-reserved-bits", message(1, Request::SetVringKick, u64(0x200)) },
        { "set-vring-kick-nofd-with-fd",
            message(1, Request::SetVringKick, u64(vhost::VRING_NOFD_MASK)) },
        { "set-vring-enable-2",
            message(0, Request::SetVringEnable, payload_of(VringState { 0, 2 })) },
        { "set-status-too-wide", message(0, Request::SetStatus, u64(0x100)) },
        { "gpu-set-socket-no-fd", message(0, Request::GpuSetSocket, {}) },
        { "add-mem-reg-no-fd", message(0, Request::AddMemReg, add_region) },
        { "set-log-base-unsupported", message(1, Request::SetLogBase, u64(0)) },
        { "unknown-request", message(0, Request(99), {}) },
    };
}

// ---- virtqueues: VirtqueueInput + memory image ----

using virtio::VIRTQ_DESC_F_INDIRECT;
using virtio::VIRTQ_DESC_F_NEXT;
using virtio::VIRTQ_DESC_F_WRITE;
using virtio::VirtqDesc;

// The driver's side of a ring written into a memory image. Default layout for small queues:
// descriptors at 0x000, avail ring at 0x080, used ring at 0x0a0, indirect tables from 0x100,
// buffers from 0x200.
class Ring {
public:
    static constexpr uint64_t indirect_gpa = 0x100;
    static constexpr uint64_t buffer_gpa = 0x200;

    explicit Ring(uint8_t size_log2, uint8_t flags = 0, uint16_t base = 0)
        : m_size(fuzz::queue_size_of(size_log2))
        , m_avail_idx(base)
    {
        m_input = { size_log2, flags, 15, 0, base, 0, 0, 0 };
        set_layout(0x000, 0x080, 0x0a0);
    }
    void set_layout(uint64_t desc, uint64_t avail, uint64_t used)
    {
        m_desc = desc;
        m_avail = avail;
        m_used = used;
        m_input.desc = uint16_t(desc / 2);
        m_input.avail = uint16_t(avail / 2);
        m_input.used = uint16_t(used / 2);
    }
    void set_chunk(uint8_t chunk) { m_input.chunk = chunk; }

    template <typename T>
    void put(uint64_t gpa, const T& value)
    {
        if (m_image.size() < gpa + sizeof(T))
            m_image.resize(gpa + sizeof(T));
        std::memcpy(m_image.data() + gpa, &value, sizeof(T));
    }
    void desc(uint16_t index, const VirtqDesc& d) { put(m_desc + 16 * uint64_t(index), d); }
    void indirect_desc(uint16_t index, const VirtqDesc& d)
    {
        put(indirect_gpa + 16 * uint64_t(index), d);
    }
    // Makes `head` available and publishes the new avail index.
    void make_available(uint16_t head)
    {
        put(m_avail + 4 + 2 * uint64_t(m_avail_idx % m_size), head);
        set_avail_idx(uint16_t(m_avail_idx + 1));
    }
    void set_avail_idx(uint16_t idx)
    {
        m_avail_idx = idx;
        put(m_avail + 2, idx);
    }
    void set_avail_flags(uint16_t flags) { put(m_avail, flags); }
    void set_used_event(uint16_t event) { put(m_avail + 4 + 2 * uint64_t(m_size), event); }
    // A control command in buffer memory: returns its GPA.
    uint64_t command(uint64_t gpa, uint32_t type, uint32_t flags = 0, uint64_t fence = 0)
    {
        put(gpa, virtio_gpu::CtrlHdr { type, flags, fence, 0, 0, {} });
        return gpa;
    }

    Bytes bytes()
    {
        // The image reaches at least the end of the used ring, so that the rings are all input.
        uint64_t used_end = m_used + 6 + 8 * uint64_t(m_size);
        if (m_image.size() < used_end && used_end <= fuzz::REGION_SIZE)
            m_image.resize(used_end);
        Bytes out = payload_of(m_input);
        out.insert(out.end(), m_image.begin(), m_image.end());
        return out;
    }

private:
    uint32_t m_size;
    uint16_t m_avail_idx;
    uint64_t m_desc = 0, m_avail = 0, m_used = 0;
    fuzz::VirtqueueInput m_input {};
    Bytes m_image;
};

constexpr uint8_t SIZE_8 = 3;
constexpr uint32_t GET_DISPLAY_INFO = uint32_t(virtio_gpu::CtrlType::GetDisplayInfo);
constexpr uint32_t RESPONSE_SIZE = 408; // virtio_gpu_resp_display_info

// One control command: a readable header and a writable response buffer.
void add_command(Ring& ring, uint16_t first_desc, uint64_t buffer, uint32_t type = GET_DISPLAY_INFO,
    uint32_t flags = 0)
{
    ring.command(buffer, type, flags, 7);
    ring.desc(first_desc, { buffer, 24, VIRTQ_DESC_F_NEXT, uint16_t(first_desc + 1) });
    ring.desc(uint16_t(first_desc + 1), { buffer + 0x40, RESPONSE_SIZE, VIRTQ_DESC_F_WRITE, 0 });
    ring.make_available(first_desc);
}

std::vector<Seed> virtqueue_seeds()
{
    std::vector<Seed> seeds;
    auto add = [&](std::string name, Ring& ring) {
        seeds.push_back({ std::move(name), ring.bytes() });
    };
    constexpr uint64_t buffer = Ring::buffer_gpa;

    { // Nothing available.
        Ring ring(SIZE_8);
        add("empty-ring", ring);
    }
    { // One GET_DISPLAY_INFO: header + response buffer.
        Ring ring(SIZE_8);
        add_command(ring, 0, buffer);
        add("simple-chain", ring);
    }
    { // A fenced command (the response echoes the fence) with an interrupt.
        Ring ring(SIZE_8, fuzz::INPUT_F_CALL);
        add_command(ring, 0, buffer, GET_DISPLAY_INFO, virtio_gpu::FLAG_FENCE);
        add("fenced-command-call", ring);
    }
    { // Three chains across the 16-bit index wrap.
        Ring ring(SIZE_8, fuzz::INPUT_F_CALL, 0xfffe);
        for (uint16_t i = 0; i < 3; ++i)
            add_command(ring, uint16_t(2 * i), buffer + 0x200 * uint64_t(i));
        add("index-wrap", ring);
    }
    { // A full queue of 64 single-descriptor chains, in the wide layout.
        Ring ring(6, fuzz::INPUT_F_CALL);
        ring.set_layout(0x000, 0x400, 0x600);
        for (uint16_t i = 0; i < 64; ++i) {
            ring.desc(i,
                { 0x1000 + 0x20 * uint64_t(i), 0x20, uint16_t(i % 2 ? VIRTQ_DESC_F_WRITE : 0), 0 });
            ring.make_available(i);
        }
        add("full-queue-64", ring);
    }
    { // A chain through an indirect table.
        Ring ring(SIZE_8, fuzz::INPUT_F_INDIRECT);
        ring.command(buffer, GET_DISPLAY_INFO);
        ring.indirect_desc(0, { buffer, 24, VIRTQ_DESC_F_NEXT, 1 });
        ring.indirect_desc(1, { buffer + 0x40, RESPONSE_SIZE, VIRTQ_DESC_F_WRITE, 0 });
        ring.desc(0, { Ring::indirect_gpa, 32, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.make_available(0);
        add("indirect", ring);
    }
    { // The same without VIRTIO_RING_F_INDIRECT_DESC negotiated.
        Ring ring(SIZE_8);
        ring.indirect_desc(0, { buffer, 24, 0, 0 });
        ring.desc(0, { Ring::indirect_gpa, 16, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.make_available(0);
        add("indirect-not-negotiated", ring);
    }
    { // An indirect table that points at another one.
        Ring ring(SIZE_8, fuzz::INPUT_F_INDIRECT);
        ring.indirect_desc(0, { Ring::indirect_gpa, 16, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.desc(0, { Ring::indirect_gpa, 16, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.make_available(0);
        add("indirect-nested", ring);
    }
    { // Indirect table length not a multiple of 16, then one with NEXT set.
        Ring ring(SIZE_8, fuzz::INPUT_F_INDIRECT);
        ring.desc(0, { Ring::indirect_gpa, 20, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.desc(1, { Ring::indirect_gpa, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 2 });
        ring.desc(2, { buffer, 16, 0, 0 });
        ring.make_available(0);
        ring.make_available(1);
        add("indirect-bad-length-and-next", ring);
    }
    { // A loop inside an indirect table.
        Ring ring(SIZE_8, fuzz::INPUT_F_INDIRECT);
        ring.indirect_desc(0, { buffer, 16, VIRTQ_DESC_F_NEXT, 1 });
        ring.indirect_desc(1, { buffer, 16, VIRTQ_DESC_F_NEXT, 0 });
        ring.desc(0, { Ring::indirect_gpa, 32, VIRTQ_DESC_F_INDIRECT, 0 });
        ring.make_available(0);
        add("indirect-loop", ring);
    }
    { // A loop: 0 -> 1 -> 0.
        Ring ring(SIZE_8);
        ring.desc(0, { buffer, 16, VIRTQ_DESC_F_NEXT, 1 });
        ring.desc(1, { buffer + 16, 16, VIRTQ_DESC_F_NEXT, 0 });
        ring.make_available(0);
        add_command(ring, 2, buffer + 0x100);
        add("loop", ring);
    }
    { // A next index past the table, and a head past the table.
        Ring ring(SIZE_8);
        ring.desc(0, { buffer, 16, VIRTQ_DESC_F_NEXT, 9 });
        ring.make_available(0);
        ring.make_available(8);
        add("index-out-of-range", ring);
    }
    { // Buffers outside guest memory: in the hole, past region 1, and straddling region 0's end.
        Ring ring(SIZE_8);
        ring.desc(0, { 0x9000, 16, 0, 0 });
        ring.desc(1, { fuzz::REGION1_GPA + fuzz::REGION_SIZE, 16, VIRTQ_DESC_F_WRITE, 0 });
        ring.desc(2, { fuzz::REGION_SIZE - 8, 16, 0, 0 });
        ring.desc(3, { 0xfffffffffffffff0, 0x20, 0, 0 });
        for (uint16_t i = 0; i < 4; ++i)
            ring.make_available(i);
        add("buffer-out-of-range", ring);
    }
    { // A response buffer in region 1, whose frontend address is below region 0's.
        Ring ring(SIZE_8);
        ring.command(buffer, GET_DISPLAY_INFO);
        ring.desc(0, { buffer, 24, VIRTQ_DESC_F_NEXT, 1 });
        ring.desc(1, { fuzz::REGION1_GPA + 0x100, RESPONSE_SIZE, VIRTQ_DESC_F_WRITE, 0 });
        ring.make_available(0);
        add("buffer-in-region1", ring);
    }
    { // Rings in region 1 (zeroed memory: an empty ring).
        Ring ring(SIZE_8);
        ring.set_layout(fuzz::REGION1_GPA, fuzz::REGION1_GPA + 0x80, fuzz::REGION1_GPA + 0xa0);
        add("rings-in-region1", ring);
    }
    { // Rings in the hole: start() refuses them.
        Ring ring(SIZE_8);
        ring.set_layout(0x9000, 0x9080, 0x90a0);
        add("rings-outside-memory", ring);
    }
    { // The used ring runs past region 0's end.
        Ring ring(6);
        ring.set_layout(0x000, 0x400, fuzz::REGION_SIZE - 0x100);
        add("used-ring-straddles-region", ring);
    }
    { // A readable descriptor after a writable one.
        Ring ring(SIZE_8);
        ring.desc(0, { buffer, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 });
        ring.desc(1, { buffer + 16, 16, 0, 0 });
        ring.make_available(0);
        add("readable-after-writable", ring);
    }
    { // Zero-length descriptors around a command, and a command shorter than its header.
        Ring ring(SIZE_8);
        ring.command(buffer, GET_DISPLAY_INFO);
        ring.desc(0, { 0, 0, VIRTQ_DESC_F_NEXT, 1 });
        ring.desc(1, { buffer, 24, VIRTQ_DESC_F_NEXT, 2 });
        ring.desc(2, { buffer + 0x40, 0, VIRTQ_DESC_F_WRITE, 0 });
        ring.desc(3, { buffer, 4, VIRTQ_DESC_F_NEXT, 4 });
        ring.desc(4, { buffer + 0x40, 8, VIRTQ_DESC_F_WRITE, 0 });
        ring.make_available(0);
        ring.make_available(3);
        add("zero-length-and-short", ring);
    }
    { // A command scattered over eight small descriptors, moved 3 bytes at a time.
        Ring ring(SIZE_8);
        ring.set_chunk(2);
        ring.command(buffer, GET_DISPLAY_INFO, virtio_gpu::FLAG_FENCE, 42);
        for (uint16_t i = 0; i < 4; ++i)
            ring.desc(i, { buffer + 6 * uint64_t(i), 6, VIRTQ_DESC_F_NEXT, uint16_t(i + 1) });
        for (uint16_t i = 4; i < 8; ++i)
            ring.desc(i,
                { buffer + 0x40 + 7 * uint64_t(i), 7,
                    uint16_t(VIRTQ_DESC_F_WRITE | (i < 7 ? VIRTQ_DESC_F_NEXT : 0)),
                    uint16_t(i + 1) });
        ring.make_available(0);
        add("scattered-command", ring);
    }
    { // The avail index moved by more than the queue size: the queue breaks.
        Ring ring(SIZE_8);
        add_command(ring, 0, buffer);
        ring.set_avail_idx(100);
        add("avail-index-too-far", ring);
    }
    { // EVENT_IDX: the driver asks for an interrupt after the second used entry.
        Ring ring(SIZE_8, fuzz::INPUT_F_EVENT_IDX | fuzz::INPUT_F_CALL);
        add_command(ring, 0, buffer);
        add_command(ring, 2, buffer + 0x200);
        ring.set_used_event(1);
        add("event-idx", ring);
    }
    { // VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX.
        Ring ring(SIZE_8, fuzz::INPUT_F_CALL);
        ring.set_avail_flags(1);
        add_command(ring, 0, buffer);
        add("no-interrupt", ring);
    }
    { // The cursor queue: UPDATE_CURSOR, no response.
        Ring ring(SIZE_8, fuzz::INPUT_F_CURSOR | fuzz::INPUT_F_CALL);
        ring.command(buffer, uint32_t(virtio_gpu::CtrlType::UpdateCursor));
        ring.desc(0, { buffer, 56, 0, 0 });
        ring.make_available(0);
        add("cursor-queue", ring);
    }
    { // A queue of one.
        Ring ring(0);
        ring.set_layout(0x000, 0x010, 0x020);
        ring.command(buffer, GET_DISPLAY_INFO);
        ring.desc(0, { buffer, 24, 0, 0 });
        ring.make_available(0);
        add("queue-size-1", ring);
    }
    return seeds;
}

// ---- virtio-gpu commands: the bytes of one command buffer ----

namespace gpu {

using namespace virtio_gpu;

CtrlHdr header(CtrlType type, uint32_t flags = 0, uint64_t fence = 0)
{
    CtrlHdr h {};
    h.type = uint32_t(type);
    h.flags = flags;
    h.fence_id = fence;
    return h;
}

Bytes attach_backing(uint32_t nr_entries, uint32_t entries_present)
{
    Bytes out = payload_of(
        ResourceAttachBacking { header(CtrlType::ResourceAttachBacking), 1, nr_entries });
    for (uint32_t i = 0; i < entries_present; ++i)
        append(out, MemEntry { 0x100000 + 0x1000 * uint64_t(i), 0x1000, 0 });
    return out;
}

// A guest blob as the Linux driver creates a dumb buffer: scattered page runs.
Bytes create_blob(uint32_t nr_entries, uint32_t entries_present)
{
    Bytes out = payload_of(
        ResourceCreateBlob { header(CtrlType::ResourceCreateBlob, FLAG_FENCE, 3), 1, BLOB_MEM_GUEST,
            BLOB_FLAG_USE_SHAREABLE, nr_entries, 0, uint64_t(entries_present) * 0x2000 });
    for (uint32_t i = 0; i < entries_present; ++i)
        append(out, MemEntry { 0x100000 + 0x10000 * uint64_t(i), 0x2000, 0 });
    return out;
}

// A command that only has a header, padded to `size` bytes of zeros.
Bytes bare(CtrlType type, size_t size)
{
    Bytes out = payload_of(header(type));
    out.resize(size);
    return out;
}

} // namespace gpu

std::vector<Seed> gpu_command_seeds()
{
    using namespace virtio_gpu;
    using gpu::header;
    const Rect screen { 0, 0, 1280, 800 };
    const CursorPos pos { 0, 100, 200, 0 };
    Bytes truncated_create = payload_of(
        ResourceCreate2d { header(CtrlType::ResourceCreate2d), 1, 2, 1280, 800 });
    truncated_create.resize(sizeof(ResourceCreate2d) - 1);
    Bytes short_header = payload_of(header(CtrlType::GetDisplayInfo));
    short_header.resize(10);

    return {
        // One valid command of each type, as the Linux driver sends them.
        { "get-display-info", payload_of(header(CtrlType::GetDisplayInfo)) },
        { "get-display-info-fenced-ring",
            payload_of(CtrlHdr { uint32_t(CtrlType::GetDisplayInfo),
                FLAG_FENCE | FLAG_INFO_RING_IDX, 42, 3, 1, {} }) },
        { "resource-create-2d",
            payload_of(ResourceCreate2d {
                header(CtrlType::ResourceCreate2d, FLAG_FENCE, 1), 1, 2, 1280, 800 }) },
        { "resource-unref", payload_of(ResourceUnref { header(CtrlType::ResourceUnref), 1, 0 }) },
        { "set-scanout", payload_of(SetScanout { header(CtrlType::SetScanout), screen, 0, 1 }) },
        { "resource-flush",
            payload_of(
                ResourceFlush { header(CtrlType::ResourceFlush, FLAG_FENCE, 2), screen, 1, 0 }) },
        { "transfer-to-host-2d",
            payload_of(TransferToHost2d {
                header(CtrlType::TransferToHost2d), { 16, 8, 64, 32 }, 8 * 5120 + 16 * 4, 1, 0 }) },
        { "resource-attach-backing", gpu::attach_backing(3, 3) },
        { "resource-detach-backing",
            payload_of(ResourceDetachBacking { header(CtrlType::ResourceDetachBacking), 1, 0 }) },
        { "get-capset-info", payload_of(GetCapsetInfo { header(CtrlType::GetCapsetInfo), 0, 0 }) },
        { "get-capset", payload_of(GetCapset { header(CtrlType::GetCapset), 1, 1 }) },
        { "get-edid", payload_of(GetEdid { header(CtrlType::GetEdid), 0, 0 }) },
        { "resource-assign-uuid",
            payload_of(ResourceAssignUuid { header(CtrlType::ResourceAssignUuid), 1, 0 }) },
        { "resource-create-blob", gpu::create_blob(3, 3) },
        { "set-scanout-blob",
            payload_of(SetScanoutBlob { header(CtrlType::SetScanoutBlob), screen, 0, 1, 1280, 800,
                uint32_t(Format::B8G8R8X8Unorm), 0, { 5120, 0, 0, 0 }, { 0, 0, 0, 0 } }) },
        { "ctx-create", gpu::bare(CtrlType::CtxCreate, 96) },
        { "submit-3d", gpu::bare(CtrlType::Submit3d, 32) },
        { "resource-map-blob", gpu::bare(CtrlType::ResourceMapBlob, 40) },
        { "update-cursor",
            payload_of(UpdateCursor { header(CtrlType::UpdateCursor), pos, 5, 2, 3, 0 }) },
        { "move-cursor",
            payload_of(UpdateCursor { header(CtrlType::MoveCursor), pos, 0, 0, 0, 0 }) },
        // Hostile ones.
        { "attach-backing-too-many", gpu::attach_backing(MAX_BACKING_ENTRIES + 1, 1) },
        { "attach-backing-short", gpu::attach_backing(4, 2) },
        { "attach-backing-zero", gpu::attach_backing(0, 0) },
        { "unknown-type", gpu::bare(static_cast<CtrlType>(0x0999), 64) },
        { "create-2d-truncated", truncated_create },
        { "header-truncated", short_header },
    };
}

// fuzz_export_message: [descriptor count] [one packet of each type, and a few broken ones].
std::vector<Seed> export_seeds()
{
    namespace ex = vgpu::exporting;
    std::vector<Seed> seeds;
    auto add = [&](const std::string& name, uint8_t fds, const Bytes& packet) {
        Bytes content { std::byte(fds) };
        content.insert(content.end(), packet.begin(), packet.end());
        seeds.push_back({ name, content });
    };
    ex::Hello hello { ex::VERSION_MAJOR, ex::VERSION_MINOR, {} };
    ex::set_text(hello.name, "vgpu-view");
    add("hello", 0, ex::encode(hello, 1));
    add("probe", 0, ex::encode(ex::Probe {}, 2));
    add("lease", 0, ex::encode(ex::Lease { 0, 1, ex::PLANE_REGION, 0 }, 3));
    add("leased", 1, ex::encode(ex::Leased { 1, 0, 2, ex::PLANE_REGION }, 3));
    add("release", 0, ex::encode(ex::Release { 1, 0 }, 4));
    add("ack", 0, ex::encode(ex::Ack { 1, 0, 7 }, 5));
    ex::Buffer buffer {};
    buffer.plane_type = ex::PLANE_GUEST_MEMORY;
    buffer.extents = 2;
    add("buffer", 1, ex::encode(buffer, 0));
    ex::Extents extents {};
    extents.count = 2;
    add("extents", 0, ex::encode(extents, 0));
    ex::Flip flip {};
    flip.covers = 3;
    flip.rects = 2;
    add("flip", 0, ex::encode(flip, 0));
    add("crc", 0, ex::encode(ex::Crc { 1, 0x1234, 9 }, 0));
    add("cursor", 0, ex::encode(ex::Cursor { 1, 2, 3, 4, 5, 6, 1, 0 }, 0));
    add("mode", 0, ex::encode(ex::Mode { 1, 0, 1, 640, 480, 0 }, 0));
    add("revoked", 0, ex::encode(ex::Revoked { 1, 1 }, 0));
    ex::ErrorReply error { 1, 2, {} };
    ex::set_text(error.text, "a reason");
    add("error", 0, ex::encode(error, 2));
    add("probe-reply", 0, ex::encode(ex::ProbeReply { 1, 2, 3, 20 }, 2));
    add("output-info", 0, ex::encode(ex::OutputInfo { 0, 1, 640, 480, 0x34325258, 0, 3 }, 2));
    add("welcome", 0, ex::encode(ex::Welcome { 1, 0, 16, 0 }, 1));
    add("buffer-gone", 0, ex::encode(ex::BufferGone { 1, 2 }, 0));
    auto truncated = ex::encode(ex::Probe {}, 2);
    truncated.pop_back();
    add("truncated", 0, truncated);
    add("probe-with-fd", 1, ex::encode(ex::Probe {}, 2));
    ex::Header unknown { ex::MAGIC, 300, 0, sizeof(ex::Header), 1 };
    Bytes unknown_bytes;
    append(unknown_bytes, unknown);
    add("unknown-type", 0, unknown_bytes);
    return seeds;
}

bool write_corpus(const fs::path& dir, const std::vector<Seed>& seeds)
{
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) {
        std::fprintf(stderr, "make_fuzz_seeds: cannot create %s: %s\n", dir.c_str(),
            error.message().c_str());
        return false;
    }
    for (const auto& seed : seeds) {
        if (!write_seed(dir, seed.name, seed.content))
            return false;
    }
    std::printf("%zu seeds in %s\n", seeds.size(), dir.c_str());
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr,
            "usage: %s <corpus dir>  (writes <dir>/fuzz_vhost_message, fuzz_virtqueue and "
            "fuzz_gpu_command)\n",
            argv[0]);
        return 2;
    }
    fs::path root = argv[1];
    if (!write_corpus(root / "fuzz_vhost_message", vhost_seeds())
        || !write_corpus(root / "fuzz_virtqueue", virtqueue_seeds())
        || !write_corpus(root / "fuzz_gpu_command", gpu_command_seeds())
        || !write_corpus(root / "fuzz_export_message", export_seeds()))
        return 1;
    return 0;
}
