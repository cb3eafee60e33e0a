// The host harness benchmark (issue 5, part 1): page flips driven through the harness's fake
// frontend, with no guest, into our backend (with and without QEMU's display socket, each with and
// without CRC capture) and into QEMU's own /usr/lib/qemu/vhost-user-gpu (2D, with the display
// socket), at 1024x768, 1920x1080 and 3840x2160, with full-frame and 256x256 damage. The machine's
// floors (a cold memcpy of the damage and CRC-32C over it) are measured in the same run, so every
// figure can be read as a ratio to them. Writes JSON (default bench/results/host.json).
//
// A flip: the frontend writes new pixels into the damaged rectangle of the backing, then submits
// TRANSFER_TO_HOST_2D of the damage, SET_SCANOUT (full frame: alternating two resources) and
// RESOURCE_FLUSH together (one kick), and waits for their used entries. 256x256 damage keeps one
// resource on the scanout and submits TRANSFER + FLUSH. Every pixel of the damage holds the flip
// number, so the display side can tell which flip an UPDATE shows: a flip's display latency is
// from its submit to the first UPDATE showing that flip or a later one (a paced backend coalesces
// flips into fewer UPDATEs: frames delivered are reported next to flips).
//
// The display side is a QEMU stand-in of its own here (not harness::DisplayPeer): it reads every
// message as DisplayPeer does and answers the same queries, but keeps only timestamps, not the
// payloads (DisplayPeer keeps every message, which at 8 MB per 1080p UPDATE would not fit).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/crc32c.h"
#include "display/qemu/wire.h"
#include "harness/backend_process.h"
#include "harness/control_client.h"
#include "harness/display_peer.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "virtio_gpu/wire.h"

namespace {

using namespace vgpu;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace qd = vgpu::display::qemu;
namespace vg = vgpu::virtio_gpu;

const char* const QEMU_BACKEND = "/usr/lib/qemu/vhost-user-gpu";

double seconds_between(Clock::time_point a, Clock::time_point b)
{
    return std::chrono::duration<double>(b - a).count();
}

// ---- /proc ------------------------------------------------------------------------------------

double process_cpu_seconds(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = text.rfind(')');
    if (close == std::string::npos)
        return 0;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; fields >> field; ++i) {
        if (i == 14)
            utime = std::stoull(field);
        if (i == 15) {
            stime = std::stoull(field);
            break;
        }
    }
    return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

// A "Name:   N kB" line of /proc/PID/status, in KiB (0 if missing).
uint64_t status_kib(pid_t pid, const std::string& name)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0)
            return std::stoull(line.substr(name.size() + 1));
    return 0;
}

// ---- QEMU's side of the display socket --------------------------------------------------------

class BenchDisplay {
public:
    BenchDisplay(uint32_t width, uint32_t height)
        : m_width(width)
        , m_height(height)
    {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
            throw std::runtime_error("socketpair");
        m_ours = Fd(pair[0]);
        m_backend_end = Fd(pair[1]);
        int stop[2];
        if (::pipe2(stop, O_CLOEXEC) < 0)
            throw std::runtime_error("pipe");
        m_stop_read = Fd(stop[0]);
        m_stop_write = Fd(stop[1]);
        m_thread = std::thread([this] { run(); });
    }
    ~BenchDisplay()
    {
        char b = 1;
        [[maybe_unused]] auto n = ::write(m_stop_write.get(), &b, 1);
        m_thread.join();
    }
    Fd take_backend_end() { return std::move(m_backend_end); }
    // Where the damage starts: the tag (flip number) is read from that pixel of each UPDATE.
    void set_tag_pixel(uint32_t x, uint32_t y)
    {
        std::lock_guard lock(m_mutex);
        m_tag_x = x;
        m_tag_y = y;
    }
    struct Update {
        Clock::time_point at;
        int64_t tag; // -1: the UPDATE did not cover the tag pixel
    };
    std::vector<Update> updates() const
    {
        std::lock_guard lock(m_mutex);
        return m_updates;
    }
    uint64_t messages() const { return m_messages.load(); }
    uint64_t update_bytes() const { return m_update_bytes.load(); }
    bool closed() const { return m_closed.load(); }

private:
    bool read_exact(std::byte* out, size_t size)
    {
        size_t done = 0;
        while (done < size) {
            pollfd p[2] = { { m_ours.get(), POLLIN, 0 }, { m_stop_read.get(), POLLIN, 0 } };
            if (::poll(p, 2, -1) < 0)
                return false;
            if (p[1].revents)
                return false;
            ssize_t n = ::recv(m_ours.get(), out + done, size - done, 0);
            if (n <= 0)
                return false;
            done += size_t(n);
        }
        return true;
    }
    void reply(uint32_t request, const void* data, size_t size)
    {
        qd::GpuHeader header { request, qd::GPU_FLAG_REPLY, uint32_t(size) };
        std::vector<std::byte> out(sizeof(header) + size);
        std::memcpy(out.data(), &header, sizeof(header));
        std::memcpy(out.data() + sizeof(header), data, size);
        [[maybe_unused]] auto n = ::send(m_ours.get(), out.data(), out.size(), MSG_NOSIGNAL);
    }
    void run()
    {
        std::vector<std::byte> payload;
        for (;;) {
            qd::GpuHeader header;
            if (!read_exact(reinterpret_cast<std::byte*>(&header), sizeof(header)))
                break;
            payload.resize(header.size);
            if (header.size && !read_exact(payload.data(), header.size))
                break;
            auto at = Clock::now();
            ++m_messages;
            switch (static_cast<qd::GpuRequest>(header.request)) {
            case qd::GpuRequest::GetProtocolFeatures: {
                uint64_t features = 0x3; // EDID | DMABUF2, as QEMU 10 answers
                reply(header.request, &features, sizeof(features));
                break;
            }
            case qd::GpuRequest::GetDisplayInfo: {
                vg::RespDisplayInfo info {};
                info.hdr.type = uint32_t(vg::CtrlType::OkDisplayInfo);
                info.pmodes[0].r = { 0, 0, m_width, m_height };
                info.pmodes[0].enabled = 1;
                reply(header.request, &info, sizeof(info));
                break;
            }
            case qd::GpuRequest::GetEdid: {
                uint32_t scanout = 0;
                if (payload.size() >= 4)
                    std::memcpy(&scanout, payload.data(), 4);
                vg::RespEdid edid {};
                edid.hdr.type = uint32_t(vg::CtrlType::OkEdid);
                auto blob = harness::DisplayPeer::fake_edid(scanout);
                edid.size = uint32_t(blob.size());
                std::memcpy(edid.edid, blob.data(), blob.size());
                reply(header.request, &edid, sizeof(edid));
                break;
            }
            case qd::GpuRequest::Update: {
                int64_t tag = -1;
                if (payload.size() >= sizeof(qd::GpuUpdate)) {
                    qd::GpuUpdate u;
                    std::memcpy(&u, payload.data(), sizeof(u));
                    std::lock_guard lock(m_mutex);
                    if (m_tag_x >= u.x && m_tag_x < u.x + u.width && m_tag_y >= u.y
                        && m_tag_y < u.y + u.height) {
                        size_t offset = sizeof(u)
                            + (size_t(m_tag_y - u.y) * u.width + (m_tag_x - u.x)) * 4;
                        if (offset + 4 <= payload.size()) {
                            uint32_t pixel;
                            std::memcpy(&pixel, payload.data() + offset, 4);
                            tag = int64_t(pixel & 0xffffff);
                        }
                    }
                    m_updates.push_back({ at, tag });
                    m_update_bytes += payload.size() - sizeof(u);
                }
                break;
            }
            default:
                break;
            }
        }
        m_closed = true;
    }

    uint32_t m_width, m_height;
    Fd m_ours, m_backend_end, m_stop_read, m_stop_write;
    mutable std::mutex m_mutex;
    std::vector<Update> m_updates; // GUARDED_BY(m_mutex)
    uint32_t m_tag_x = 0, m_tag_y = 0; // GUARDED_BY(m_mutex)
    std::atomic<uint64_t> m_messages { 0 }, m_update_bytes { 0 };
    std::atomic<bool> m_closed { false };
    std::thread m_thread;
};

// ---- the runs -------------------------------------------------------------------------------

struct Path {
    std::string name;
    bool qemu_backend;
    bool display_socket;
    bool crc;
    bool blob = false; // guest blobs (--blob): SET_SCANOUT_BLOB of scattered pages, fenced flushes
};

struct Config {
    uint32_t width, height;
    bool full; // full-frame damage; else 256x256
    // The guest rewrites every pixel of the damage before each flip (a game or a video); else it
    // flips between frames drawn beforehand and writes only the damage's first row, the tag (as
    // the guest benchmark's drmtest does, which flips between two prepared buffers), so that the
    // figures are the device's and not the guest's drawing.
    bool redraw = true;
};

struct Stats {
    double p50 = 0, p99 = 0, mean = 0;
};

Stats stats_us(std::vector<double> v)
{
    Stats s;
    if (v.empty())
        return s;
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
        return v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))];
    };
    s.p50 = at(0.50) * 1e6;
    s.p99 = at(0.99) * 1e6;
    double sum = 0;
    for (double x : v)
        sum += x;
    s.mean = sum / double(v.size()) * 1e6;
    return s;
}

// The backing of a resource as host pointers: pieces of the harness guest RAM, in order.
struct Backing {
    std::vector<std::pair<std::byte*, uint64_t>> pieces;
    std::vector<vg::MemEntry> entries;
    void fill(uint64_t offset, uint64_t length, uint32_t value) const
    {
        for (const auto& [base, size] : pieces) {
            if (length == 0)
                return;
            if (offset >= size) {
                offset -= size;
                continue;
            }
            uint64_t n = std::min(length, size - offset);
            std::fill_n(reinterpret_cast<uint32_t*>(base + offset), n / 4, value);
            length -= n;
            offset = 0;
        }
    }
};

// One command slot in guest RAM: request and response, reused every flip.
struct Slot {
    uint64_t request_gpa;
    uint64_t response_gpa;
};

json run_path(const Path& path, const Config& config, double seconds, uint32_t max_flips)
{
    const uint32_t w = config.width, h = config.height;
    const std::string size = std::to_string(w) + "x" + std::to_string(h);
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    std::optional<harness::BackendProcess> backend;
    if (path.qemu_backend)
        backend.emplace(harness::BackendProcess::listen_binary(QEMU_BACKEND, {}));
    else {
        // The control socket for CRC capture and for the bytes the device copied.
        std::vector<std::string> args { "--log-level", "error", "--output", size, "--max-hostmem",
            "1G", "--control", control_path };
        if (path.blob)
            args.push_back("--blob");
        backend.emplace(harness::BackendProcess::listen(args));
    }
    const uint64_t frame_bytes = uint64_t(w) * h * 4;
    const uint32_t resources = config.full ? 2 : 1;
    harness::SessionOptions options;
    options.with_display_socket
        = false; // ours is sent below: a display side that keeps no payloads
    options.queue_size = 64;
    // A scattered blob takes pages from a pool about twice its size (harness::ScatteredBuffer).
    options.ram_low = resources * frame_bytes * (path.blob ? 3 : 1) + (8 << 20);
    options.ram_high = 1 << 20;
    harness::QemuSession session(backend->socket_path(), options);
    std::optional<BenchDisplay> display;
    session.qemu_start();
    if (path.display_socket) {
        display.emplace(w, h);
        Fd end = display->take_backend_end();
        int fd = end.get();
        if (!session.frontend().request(vhost::Request::GpuSetSocket, {}, std::span(&fd, 1)))
            throw std::runtime_error("GPU_SET_SOCKET");
    }
    session.driver_ok();
    harness::GpuDriver gpu(session);
    auto& ram = session.ram();

    // Command slots, then the backings.
    constexpr uint32_t SLOT_BYTES = 128;
    std::vector<Slot> slots;
    for (int i = 0; i < 4; ++i)
        slots.push_back({ ram.alloc(SLOT_BYTES), ram.alloc(SLOT_BYTES) });
    std::vector<Backing> backings(resources);
    for (uint32_t i = 0; i < resources; ++i) {
        auto& b = backings[i];
        if (path.blob) {
            // Pages as the Linux driver's shmem gives them: runs of 1..3 pages, shuffled.
            auto buffer = harness::ScatteredBuffer::allocate(ram, frame_bytes, 100 + i);
            for (const auto& e : buffer.entries)
                b.pieces.push_back({ ram.host(e.addr), e.length });
            b.entries = buffer.entries;
            continue;
        }
        uint64_t gpa = ram.alloc(frame_bytes, 4096);
        b.pieces.push_back({ ram.host(gpa), frame_bytes });
        b.entries.push_back({ gpa, uint32_t(frame_bytes), 0 });
    }
    const vg::Rect full { 0, 0, w, h };
    const vg::Rect damage = config.full
        ? full
        : vg::Rect { std::min(64u, w - 256), std::min(64u, h - 256), 256, 256 };
    const uint64_t damage_bytes = uint64_t(damage.width) * damage.height * 4;
    if (display)
        display->set_tag_pixel(damage.x, damage.y);
    const uint32_t xrgb = uint32_t(vg::Format::B8G8R8X8Unorm);
    for (uint32_t i = 0; i < resources; ++i) {
        uint32_t id = i + 1;
        backings[i].fill(0, frame_bytes, 0x00202020);
        bool made = path.blob ? gpu.create_blob(id, frame_bytes, backings[i].entries).type
                == uint32_t(vg::CtrlType::OkNodata)
                              : gpu.create_2d(id, w, h).type == uint32_t(vg::CtrlType::OkNodata)
                && gpu.attach_backing(id, backings[i].entries).type
                    == uint32_t(vg::CtrlType::OkNodata)
                && gpu.transfer(id, full).type == uint32_t(vg::CtrlType::OkNodata);
        if (!made)
            throw std::runtime_error(
                "resource set-up failed for " + path.name + "; log:\n" + backend->log());
    }
    bool shown = path.blob ? gpu.set_scanout_blob(0, 1, w, h, xrgb, w * 4, 0, full).type
            == uint32_t(vg::CtrlType::OkNodata)
                           : gpu.set_scanout(0, 1, full).type == uint32_t(vg::CtrlType::OkNodata);
    if (!shown || gpu.flush(1, full).type != uint32_t(vg::CtrlType::OkNodata))
        throw std::runtime_error("initial scanout failed; log:\n" + backend->log());

    std::optional<harness::ControlClient> control;
    if (!path.qemu_backend)
        control.emplace(harness::ControlClient::connect(control_path));
    if (path.crc)
        control->call("crc-start", { { "output", 0 } });
    auto bytes_copied = [&]() -> uint64_t {
        return control ? control->call("query-stats")["bytes-copied"].get<uint64_t>() : 0;
    };
    uint64_t copied_before = 0;

    auto& queue = session.control();
    auto put_command = [&](size_t slot, const auto& command) {
        ram.put(slots[slot].request_gpa, command);
        ram.put(slots[slot].response_gpa, vg::CtrlHdr {});
        return queue.add({ { slots[slot].request_gpa, uint32_t(sizeof(command)), false },
            { slots[slot].response_gpa, SLOT_BYTES, true } });
    };
    auto header = [](vg::CtrlType type) {
        vg::CtrlHdr hdr {};
        hdr.type = uint32_t(type);
        return hdr;
    };

    std::vector<double> used_latency, display_latency;
    std::vector<Clock::time_point> submits;
    uint64_t crc_entries = 0, crc_overflow = 0;
    uint32_t flip = 0;
    const uint32_t warmup = 5;
    double cpu_before = 0;
    Clock::time_point start {}, end {};
    size_t updates_before = 0;
    // The guest draws flip n's damage in its resource: every pixel holds the flip's tag.
    auto resource_of = [&](uint32_t n) { return config.full ? 1 + n % resources : 1; };
    auto draw = [&](uint32_t n) {
        const Backing& b = backings[resource_of(n) - 1];
        uint32_t value = (n + 1) & 0xffffff;
        const uint32_t rows = config.redraw ? damage.height : 1;
        if (config.full && config.redraw)
            b.fill(0, frame_bytes, value);
        else
            for (uint32_t row = 0; row < rows; ++row)
                b.fill((uint64_t(damage.y + row) * w + damage.x) * 4, uint64_t(damage.width) * 4,
                    value);
    };
    struct Submitted {
        Clock::time_point at;
        uint16_t flush_head;
        size_t commands;
    };
    auto submit = [&](uint32_t n) {
        uint32_t id = resource_of(n);
        vg::TransferToHost2d t {};
        t.hdr = header(vg::CtrlType::TransferToHost2d);
        t.r = damage;
        t.offset = (uint64_t(damage.y) * w + damage.x) * 4;
        t.resource_id = id;
        vg::SetScanout s {};
        s.hdr = header(vg::CtrlType::SetScanout);
        s.r = full;
        s.scanout_id = 0;
        s.resource_id = id;
        vg::SetScanoutBlob sb {};
        sb.hdr = header(vg::CtrlType::SetScanoutBlob);
        sb.r = full;
        sb.resource_id = id;
        sb.width = w;
        sb.height = h;
        sb.format = xrgb;
        sb.strides[0] = w * 4;
        vg::ResourceFlush f {};
        f.hdr = header(vg::CtrlType::ResourceFlush);
        f.r = damage;
        f.resource_id = id;
        if (path.blob) {
            // The Linux driver fences every update of a blob plane.
            f.hdr.flags = vg::FLAG_FENCE;
            f.hdr.fence_id = n + 1;
        }
        Submitted out { Clock::now(), 0, 0 };
        put_command(out.commands++, t);
        if (config.full && path.blob)
            put_command(out.commands++, sb);
        else if (config.full)
            put_command(out.commands++, s);
        out.flush_head = put_command(out.commands++, f);
        queue.notify_kick();
        return out;
    };
    // Waits for the flip's used entries; returns when its flush was used.
    auto complete = [&](const Submitted& sub) {
        Clock::time_point flush_used {};
        for (size_t i = 0; i < sub.commands; ++i) {
            auto used = queue.wait_used();
            if (!used)
                throw std::runtime_error(path.name + ": no used entry; log:\n" + backend->log());
            if (used->id == sub.flush_head)
                flush_used = Clock::now();
        }
        for (size_t i = 0; i < sub.commands; ++i)
            if (ram.get<vg::CtrlHdr>(slots[i].response_gpa).type
                != uint32_t(vg::CtrlType::OkNodata))
                throw std::runtime_error(path.name + ": a flip command failed with "
                    + std::to_string(ram.get<vg::CtrlHdr>(slots[i].response_gpa).type));
        return flush_used;
    };

    for (;;) {
        if (flip == warmup) {
            if (display) {
                display->updates(); // settle
                std::this_thread::sleep_for(std::chrono::milliseconds(30));
                updates_before = display->updates().size();
            }
            copied_before = bytes_copied();
            cpu_before = process_cpu_seconds(backend->pid());
            start = Clock::now();
        }
        draw(flip);
        auto sub = submit(flip);
        auto used_at = complete(sub);
        ++flip;
        if (flip > warmup) {
            submits.push_back(sub.at);
            used_latency.push_back(seconds_between(sub.at, used_at));
            if (path.crc && (flip - warmup) % 100 == 0) {
                auto r = control->call("crc-read", { { "output", 0 } });
                crc_entries += r["entries"].size();
                crc_overflow += r["overflow"].get<uint64_t>();
            }
            if (flip - warmup >= max_flips || seconds_between(start, Clock::now()) >= seconds)
                break;
        }
    }
    end = Clock::now();
    double cpu = process_cpu_seconds(backend->pid()) - cpu_before;
    const uint32_t flips = flip - warmup;
    const uint64_t copied = bytes_copied() - copied_before;
    if (path.crc) {
        auto r = control->call("crc-stop", { { "output", 0 } });
        crc_entries += r["entries"].size();
        crc_overflow += r["overflow"].get<uint64_t>();
    }

    json result;
    result["path"] = path.name;
    result["backend"] = path.qemu_backend ? "qemu vhost-user-gpu" : "vgpu-display";
    result["display_socket"] = path.display_socket;
    result["crc_capture"] = path.crc;
    result["width"] = w;
    result["height"] = h;
    result["damage"] = config.full ? "full" : "256x256";
    result["flips"] = flips;
    double wall = seconds_between(start, end);
    result["seconds"] = wall;
    result["flips_per_s"] = double(flips) / wall;
    auto ul = stats_us(used_latency);
    result["used_latency_us"] = { { "p50", ul.p50 }, { "p99", ul.p99 }, { "mean", ul.mean } };
    result["backend_cpu_us_per_flip"] = cpu * 1e6 / double(flips);
    // What the device copied (query-stats "bytes-copied"); QEMU's backend copies the damage too.
    result["bytes_copied_per_flip"] = control ? double(copied) / double(flips)
                                              : double(damage_bytes);
    result["blob"] = path.blob;
    result["guest"] = config.redraw ? "redraw" : "flip-only";
    if (path.crc) {
        result["crc_entries"] = crc_entries;
        result["crc_overflow"] = crc_overflow;
    }
    if (display) {
        // Let the last UPDATEs arrive (our backend paces them).
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        auto updates = display->updates();
        std::vector<BenchDisplay::Update> run_updates(
            updates.begin() + std::ptrdiff_t(std::min(updates_before, updates.size())),
            updates.end());
        // For flip i (tag warmup + i + 1): the first UPDATE at or after its submit showing it or
        // later.
        size_t u = 0;
        uint32_t missing = 0;
        for (uint32_t i = 0; i < flips; ++i) {
            int64_t tag = int64_t(warmup + i + 1);
            while (u < run_updates.size()
                && (run_updates[u].at < submits[i] || run_updates[u].tag < tag))
                ++u;
            if (u == run_updates.size()) {
                ++missing;
                continue;
            }
            display_latency.push_back(seconds_between(submits[i], run_updates[u].at));
        }
        size_t delivered = 0;
        for (const auto& up : run_updates)
            delivered += up.at <= end + std::chrono::milliseconds(100);
        auto dl = stats_us(display_latency);
        result["display_latency_us"] = { { "p50", dl.p50 }, { "p99", dl.p99 },
            { "mean", dl.mean } };
        result["frames_delivered"] = delivered;
        result["frames_delivered_per_flip"] = double(delivered) / double(flips);
        result["flips_never_shown"] = missing;
        result["display_messages_total"] = display->messages();
    }
    result["rss_anon_kib"] = status_kib(backend->pid(), "RssAnon");
    result["rss_kib"] = status_kib(backend->pid(), "VmRSS");
    return result;
}

// ---- floors -----------------------------------------------------------------------------------

// Cold copies and CRCs of the damage of a w x h frame: rotate among frame-sized buffers totalling
// more than 64 MiB (past the LLC). Returns the median microseconds per operation.
json measure_floor(uint32_t w, uint32_t h, bool full)
{
    const uint64_t frame = uint64_t(w) * h * 4;
    const size_t count = std::max<size_t>(4, size_t((uint64_t(80) << 20) / frame + 1));
    std::vector<std::vector<uint32_t>> buffers(count, std::vector<uint32_t>(frame / 4));
    for (size_t i = 0; i < count; ++i)
        std::fill(buffers[i].begin(), buffers[i].end(), uint32_t(0x00010203u * (i + 1)));
    // A rectangle moves around the frame from one repetition to the next, so that its rows are
    // cold too (a fixed one in a few buffers would stay in the cache).
    const uint32_t dw = full ? w : 256, dh = full ? h : 256;
    const int reps = full ? (w > 2000 ? 12 : 30) : 200;
    std::vector<double> copy, crc;
    std::vector<uint32_t> tiles(w / 128 + 1);
    volatile uint32_t sink = 0;
    size_t next = 0;
    for (int r = 0; r < reps; ++r) {
        const uint32_t dx = full ? 0 : uint32_t(r * 263) % (w - dw + 1),
                       dy = full ? 0 : uint32_t(r * 131) % (h - dh + 1);
        auto& src = buffers[next % count];
        auto& dst = buffers[(next + 1) % count];
        next += 2;
        auto t0 = Clock::now();
        if (full)
            std::memcpy(dst.data(), src.data(), frame);
        else
            for (uint32_t row = 0; row < dh; ++row)
                std::memcpy(dst.data() + size_t(dy + row) * w + dx,
                    src.data() + size_t(dy + row) * w + dx, size_t(dw) * 4);
        auto t1 = Clock::now();
        copy.push_back(seconds_between(t0, t1));
        auto& c = buffers[next % count];
        ++next;
        auto t2 = Clock::now();
        // Our CRC function as capture uses it: 128-pixel tiles of each row of the damage.
        uint32_t value = 0;
        for (uint32_t row = 0; row < dh; ++row) {
            crc::crc32c_xrgb_blocks(
                c.data() + size_t(dy + row) * w + dx, 128, dw / 128, tiles.data());
            value ^= tiles[0];
        }
        auto t3 = Clock::now();
        sink = sink + value;
        crc.push_back(seconds_between(t2, t3));
    }
    // Writing the damage into a unix socket that a reader drains, as one UPDATE's pixels go to
    // QEMU: the floor of what the display socket costs the sender (the kernel copies it).
    std::vector<double> write;
    {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
            throw std::runtime_error("socketpair");
        Fd ours(pair[0]), theirs(pair[1]);
        int size = 8 << 20;
        (void)::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        std::atomic<bool> done { false };
        std::thread reader([&] {
            std::vector<char> sink_buffer(1 << 20);
            while (!done.load())
                if (::read(theirs.get(), sink_buffer.data(), sink_buffer.size()) <= 0)
                    break;
        });
        const uint64_t bytes_to_write = uint64_t(dw) * dh * 4;
        for (int r = 0; r < std::max(reps / 2, 8); ++r) {
            auto& src = buffers[next % count];
            ++next;
            auto t0 = Clock::now();
            uint64_t sent = 0;
            while (sent < bytes_to_write) {
                ssize_t n = ::send(ours.get(), reinterpret_cast<const char*>(src.data()) + sent,
                    bytes_to_write - sent, MSG_NOSIGNAL);
                if (n <= 0)
                    break;
                sent += uint64_t(n);
            }
            write.push_back(seconds_between(t0, Clock::now()));
        }
        done = true;
        ::shutdown(ours.get(), SHUT_RDWR);
        reader.join();
    }
    auto cs = stats_us(copy), rs = stats_us(crc), ws = stats_us(write);
    double bytes = double(dw) * dh * 4;
    json j;
    j["width"] = w;
    j["height"] = h;
    j["damage"] = full ? "full" : "256x256";
    j["bytes"] = uint64_t(dw) * dh * 4;
    j["cold_memcpy_us"] = cs.p50;
    j["cold_memcpy_gb_per_s"] = bytes / cs.p50 / 1e3;
    j["crc32c_us"] = rs.p50;
    j["crc32c_gb_per_s"] = bytes / rs.p50 / 1e3;
    j["crc32c_implementation"] = crc::implementation_name(crc::implementation());
    j["socket_write_us"] = ws.p50;
    j["buffers_mib"] = double(count * frame) / double(1 << 20);
    return j;
}

} // namespace

int main(int argc, char** argv)
{
    // bench_host [OUT.json [SCALE [FILTER]]]: SCALE multiplies the seconds per run; FILTER keeps
    // only the runs whose "path WxH damage guest" line contains it (for a quick look).
    std::string out = argc > 1 ? argv[1] : "bench/results/host.json";
    double scale = argc > 2 ? std::stod(argv[2]) : 1.0;
    std::string filter = argc > 3 ? argv[3] : "";
    const std::vector<Path> paths {
        { "ours+display", false, true, false },
        { "ours", false, false, false },
        { "ours+display+crc", false, true, true },
        { "ours+crc", false, false, true },
        { "qemu-vhost-user-gpu", true, true, false },
        { "blob+display", false, true, false, true },
        { "blob", false, false, false, true },
        { "blob+display+crc", false, true, true, true },
        { "blob+crc", false, false, true, true },
    };
    const std::vector<std::pair<uint32_t, uint32_t>> sizes { { 1024, 768 }, { 1920, 1080 },
        { 3840, 2160 } };
    json doc;
    doc["description"] = "host harness benchmark: page flips through the fake frontend, no guest "
                         "(bench/bench_host.cpp)";
    doc["nproc"] = std::thread::hardware_concurrency();
    json floors = json::array(), runs = json::array();
    auto wall_start = Clock::now();
    struct Shape {
        bool full, redraw;
    };
    for (auto [w, h] : sizes)
        for (Shape shape : { Shape { true, true }, Shape { true, false }, Shape { false, true } }) {
            const bool full = shape.full;
            auto label = [&](const Path& path) {
                return path.name + " " + std::to_string(w) + "x" + std::to_string(h) + " "
                    + (full ? "full" : "256x256") + " " + (shape.redraw ? "redraw" : "flip-only");
            };
            bool any = false;
            for (const auto& path : paths)
                any |= label(path).find(filter) != std::string::npos;
            if (!any)
                continue;
            // One floor per size and damage (flip-only shares redraw's).
            const bool reuse = !shape.redraw && !floors.empty() && floors.back()["width"] == w
                && floors.back()["height"] == h && floors.back()["damage"] == "full";
            json floor = reuse ? floors.back() : measure_floor(w, h, full);
            std::fprintf(stderr,
                "floor %ux%u %s: memcpy %.1f us (%.2f GB/s), crc32c %.1f us (%.2f GB/s)\n", w, h,
                full ? "full" : "256x256", floor["cold_memcpy_us"].get<double>(),
                floor["cold_memcpy_gb_per_s"].get<double>(), floor["crc32c_us"].get<double>(),
                floor["crc32c_gb_per_s"].get<double>());
            if (!reuse)
                floors.push_back(floor);
            for (const auto& path : paths) {
                if (label(path).find(filter) == std::string::npos)
                    continue;
                double seconds = (w == 1920 ? 3.0 : 1.5) * scale;
                json r;
                try {
                    r = run_path(path, { w, h, full, shape.redraw }, seconds, 20000);
                } catch (const std::exception& e) {
                    r = { { "path", path.name }, { "width", w }, { "height", h },
                        { "damage", full ? "full" : "256x256" },
                        { "guest", shape.redraw ? "redraw" : "flip-only" }, { "error", e.what() } };
                    std::fprintf(
                        stderr, "%s %ux%u: FAILED: %s\n", path.name.c_str(), w, h, e.what());
                    runs.push_back(r);
                    continue;
                }
                // 2D: our copy of the damage (and its CRC). Blob: no copy; the CRC, and the
                // socket write of the UPDATE with the display socket. A blob flip with neither
                // has no floor (the goal is an absolute 0.1 ms).
                double floor_us = (path.blob ? 0.0 : floor["cold_memcpy_us"].get<double>())
                    + (path.crc ? floor["crc32c_us"].get<double>() : 0.0)
                    + (path.blob && path.display_socket ? floor["socket_write_us"].get<double>()
                                                        : 0.0);
                r["floor_us"] = floor_us;
                r["cpu_per_flip_over_floor"] = floor_us > 0
                    ? json(r["backend_cpu_us_per_flip"].get<double>() / floor_us)
                    : json(nullptr);
                std::fprintf(stderr,
                    "%-20s %ux%u %-7s %-9s %6.0f flips/s  used p50 %7.1f p99 %7.1f us",
                    path.name.c_str(), w, h, full ? "full" : "256x256",
                    shape.redraw ? "redraw" : "flip-only", r["flips_per_s"].get<double>(),
                    r["used_latency_us"]["p50"].get<double>(),
                    r["used_latency_us"]["p99"].get<double>());
                if (r.contains("display_latency_us"))
                    std::fprintf(stderr, "  display p50 %8.1f p99 %8.1f us  frames %zu/%u",
                        r["display_latency_us"]["p50"].get<double>(),
                        r["display_latency_us"]["p99"].get<double>(),
                        r["frames_delivered"].get<size_t>(), r["flips"].get<uint32_t>());
                std::fprintf(stderr,
                    "  cpu %7.1f us/flip (%.2fx floor)  copied %.0f B/flip  RssAnon %llu KiB\n",
                    r["backend_cpu_us_per_flip"].get<double>(),
                    r["cpu_per_flip_over_floor"].is_null()
                        ? 0.0
                        : r["cpu_per_flip_over_floor"].get<double>(),
                    r["bytes_copied_per_flip"].get<double>(),
                    static_cast<unsigned long long>(r["rss_anon_kib"].get<uint64_t>()));
                runs.push_back(r);
            }
        }
    doc["floors"] = floors;
    doc["runs"] = runs;
    doc["total_seconds"] = seconds_between(wall_start, Clock::now());
    std::ofstream(out) << doc.dump(2) << "\n";
    std::fprintf(stderr, "wrote %s in %.0f s\n", out.c_str(), doc["total_seconds"].get<double>());
    return 0;
}
