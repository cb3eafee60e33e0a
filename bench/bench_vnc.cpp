// vgpu-vnc's benchmark (issue 14): the real backend driven by the harness's frontend, vgpu-vnc
// (the binary) on its export socket, and one VNC client in this process (libvncclient, on a
// thread of its own) forcing one encoding. For a 2D and a blob guest, 1920x1080 full-frame flips
// and 256x256 damage, and raw, tight (libvncclient's defaults: JPEG quality 5) and zrle:
//  - serial: a flip, then the wait until the client has the update: flip-to-client latency
//    (from the frontend's RESOURCE_FLUSH to the client's end of that FramebufferUpdate, both
//    CLOCK_MONOTONIC) and vgpu-vnc's CPU per update (its schedstat, nanoseconds);
//  - streaming: the frontend flips as fast as the device answers for a few seconds: updates per
//    second the client gets, flips per second, and the backend's and vgpu-vnc's CPU per flip;
//  - the backend's CPU per flip with no vgpu-vnc at all, the same flips (the baseline).
// Everything runs on the machine's 2 cores at once (frontend, backend, vgpu-vnc, client).
//
//   bench_vnc OUT.json VGPU_VNC
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rfb/rfbclient.h>

#include "export/codec.h"
#include "harness/backend_process.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "stats.h"
#include "virtio_gpu/formats.h"

namespace {

using namespace vgpu;
using namespace std::chrono_literals;
using json = nlohmann::json;
using virtio_gpu::Rect;
using Clock = std::chrono::steady_clock;

constexpr uint32_t W = 1920, H = 1080;
constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t OK = uint32_t(virtio_gpu::CtrlType::OkNodata);

using bench::summary;

// Time on CPU of every thread of `pid` (schedstat's first field), nanoseconds.
uint64_t cpu_ns(pid_t pid)
{
    uint64_t total = 0;
    std::error_code error;
    for (const auto& task :
        std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), error)) {
        std::ifstream in(task.path() / "schedstat");
        uint64_t ns = 0;
        if (in >> ns)
            total += ns;
    }
    return total;
}

// Frame content: a gradient that moves with `seed`, so that every encoder has new work.
void paint(std::vector<std::byte>& out, uint32_t width, uint32_t height, uint32_t seed)
{
    out.resize(size_t(width) * height * 4);
    for (uint32_t y = 0; y < height; ++y)
        for (uint32_t x = 0; x < width; ++x) {
            size_t i = (size_t(y) * width + x) * 4;
            out[i] = std::byte(uint8_t(x + seed * 3));
            out[i + 1] = std::byte(uint8_t(y + seed));
            out[i + 2] = std::byte(uint8_t((x ^ y) + seed * 7));
            out[i + 3] = std::byte(0);
        }
}

// The backend and its guest: one 1920x1080 resource shown on output 0, redrawn in place.
struct Guest {
    bool blob;
    std::unique_ptr<harness::BackendProcess> backend;
    std::unique_ptr<harness::QemuSession> session;
    std::unique_ptr<harness::GpuDriver> gpu;
    std::string export_path;
    harness::ScatteredBuffer pages; // blob
    uint64_t gpa = 0; // 2D backing
    uint64_t fence = 1;
    uint32_t seed = 0;
    std::vector<std::byte> scratch;

    explicit Guest(bool is_blob)
        : blob(is_blob)
    {
        auto dir = harness::make_temp_dir();
        export_path = dir + "/export.sock";
        std::vector<std::string> args { "--export", export_path };
        if (blob)
            args.push_back("--blob");
        backend = std::make_unique<harness::BackendProcess>(harness::BackendProcess::listen(args));
        harness::SessionOptions options;
        options.with_display_socket = false;
        options.ram_low = uint64_t(160) << 20;
        session = std::make_unique<harness::QemuSession>(backend->socket_path(), options);
        session->start();
        gpu = std::make_unique<harness::GpuDriver>(*session);
        paint(scratch, W, H, 0);
        Rect all { 0, 0, W, H };
        if (blob) {
            pages = harness::ScatteredBuffer::allocate(session->ram(), uint64_t(W) * H * 4, 1);
            pages.write(session->ram(), 0, scratch);
            gpu->create_blob(1, pages.size, pages.entries);
            gpu->set_scanout_blob(0, 1, W, H, XRGB, W * 4, 0, all);
        } else {
            gpa = gpu->create_with_backing(1, W, H, XRGB, scratch);
            gpu->transfer(1, all);
            gpu->set_scanout(0, 1, all);
        }
        if (gpu->flush_fenced(1, all, fence++).type != OK)
            throw std::runtime_error("the first flush failed");
    }

    // New pixels in `damage` (rows written where the guest keeps them), then the flush the Linux
    // driver sends: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH for 2D, a fenced RESOURCE_FLUSH for a
    // blob.
    void flip(const Rect& damage)
    {
        ++seed;
        std::vector<std::byte> row(size_t(damage.width) * 4);
        for (uint32_t y = damage.y; y < damage.y + damage.height; ++y) {
            for (uint32_t x = 0; x < damage.width; ++x) {
                row[size_t(x) * 4] = std::byte(uint8_t(damage.x + x + seed * 3));
                row[size_t(x) * 4 + 1] = std::byte(uint8_t(y + seed));
                row[size_t(x) * 4 + 2] = std::byte(uint8_t(((damage.x + x) ^ y) + seed * 7));
                row[size_t(x) * 4 + 3] = std::byte(0);
            }
            uint64_t at = (uint64_t(y) * W + damage.x) * 4;
            if (blob)
                pages.write(session->ram(), at, row);
            else
                session->ram().write(gpa + at, row);
        }
        if (!blob && gpu->transfer(1, damage, (uint64_t(damage.y) * W + damage.x) * 4).type != OK)
            throw std::runtime_error("a transfer failed");
        if (gpu->flush_fenced(1, damage, fence++).type != OK)
            throw std::runtime_error("a flush failed");
    }
};

// vgpu-vnc on the guest's export socket, on a free port.
struct VncProcess {
    pid_t pid = -1;
    int port = 0;

    VncProcess(const std::string& binary, const std::string& export_path)
    {
        int p[2];
        if (::pipe(p) != 0)
            throw std::runtime_error("pipe");
        pid = ::fork();
        if (pid == 0) {
            ::dup2(p[1], 1);
            ::close(p[0]);
            ::execl(binary.c_str(), binary.c_str(), "--export", export_path.c_str(), "--listen",
                "127.0.0.1:0", "--log-level", "warn", nullptr);
            ::_exit(127);
        }
        ::close(p[1]);
        std::string out;
        char c;
        while (out.find("ready\n") == std::string::npos && ::read(p[0], &c, 1) == 1)
            out += c;
        ::close(p[0]);
        auto at = out.find("vnc 127.0.0.1:");
        if (at == std::string::npos)
            throw std::runtime_error("vgpu-vnc did not start: " + out);
        port = std::stoi(out.substr(at + 14));
    }
    ~VncProcess()
    {
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
    }
};

void quiet(const char*, ...);

// One libvncclient client on its own thread, counting the FramebufferUpdates it has finished.
class Client {
public:
    Client(int port, const char* encodings)
    {
        rfbClientLog = rfbClientErr = quiet;
        m_client = rfbGetClient(8, 3, 4);
        m_client->serverHost = strdup("127.0.0.1");
        m_client->serverPort = port;
        m_client->appData.encodingsString = encodings;
        m_client->appData.useRemoteCursor = TRUE;
        rfbClientSetClientData(m_client, &TAG, this);
        m_client->FinishedFrameBufferUpdate = [](rfbClient* c) {
            auto* self = static_cast<Client*>(rfbClientGetClientData(c, &TAG));
            std::lock_guard lock(self->m_mutex);
            ++self->m_updates;
            self->m_last = ex_now();
            self->m_changed.notify_all();
        };
        int argc = 1;
        char name[] = "bench_vnc";
        char* argv[] = { name, nullptr };
        if (!rfbInitClient(m_client, &argc, argv))
            throw std::runtime_error("the VNC client could not connect");
        m_thread = std::thread([this] {
            while (!m_stop) {
                int n = WaitForMessage(m_client, 100000);
                if (n < 0 || (n > 0 && !HandleRFBServerMessage(m_client))) {
                    m_failed = true;
                    return;
                }
            }
        });
    }
    ~Client()
    {
        m_stop = true;
        m_thread.join();
        rfbClientCleanup(m_client);
    }
    uint64_t updates()
    {
        std::lock_guard lock(m_mutex);
        return m_updates;
    }
    // Waits until more than `seen` updates have finished; returns when the last one did.
    uint64_t wait_beyond(uint64_t seen, std::chrono::milliseconds timeout = 5000ms)
    {
        std::unique_lock lock(m_mutex);
        if (!m_changed.wait_for(lock, timeout, [&] { return m_updates > seen; }))
            throw std::runtime_error("the VNC client got no update");
        return m_last;
    }
    bool failed() const { return m_failed; }

private:
    static uint64_t ex_now() { return exporting::monotonic_ns(); }
    static inline int TAG = 0;
    rfbClient* m_client = nullptr;
    std::thread m_thread;
    std::atomic<bool> m_stop { false }, m_failed { false };
    std::mutex m_mutex;
    std::condition_variable m_changed;
    uint64_t m_updates = 0, m_last = 0;
};

void quiet(const char*, ...) { }

Rect damage_of(bool full, int i)
{
    if (full)
        return { 0, 0, W, H };
    // 256x256 squares walking over the frame.
    return { uint32_t(i * 256 % (W - 256)), uint32_t(i * 128 % (H - 256)), 256, 256 };
}

json scenario(const std::string& vnc_binary, bool blob, bool full, const char* encoding)
{
    Guest guest(blob);
    VncProcess vnc(vnc_binary, guest.export_path);
    Client client(vnc.port, encoding);
    client.wait_beyond(0); // the first, whole frame
    std::this_thread::sleep_for(100ms);

    // Serial: one flip at a time, to the client.
    constexpr int SERIAL = 60;
    std::vector<double> latency;
    uint64_t vnc_before = cpu_ns(vnc.pid);
    for (int i = 0; i < SERIAL; ++i) {
        uint64_t seen = client.updates();
        uint64_t t0 = exporting::monotonic_ns();
        guest.flip(damage_of(full, i));
        uint64_t t1 = client.wait_beyond(seen);
        latency.push_back(double(t1 - t0) / 1000.0);
        std::this_thread::sleep_for(2ms);
    }
    double vnc_cpu_per_update_us = double(cpu_ns(vnc.pid) - vnc_before) / SERIAL / 1000.0;

    // Streaming: flips back to back for a few seconds.
    std::this_thread::sleep_for(100ms);
    uint64_t updates_before = client.updates();
    uint64_t backend_before = cpu_ns(guest.backend->pid());
    vnc_before = cpu_ns(vnc.pid);
    auto start = Clock::now();
    int flips = 0;
    while (Clock::now() - start < 3s)
        guest.flip(damage_of(full, flips++));
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    uint64_t updates = client.updates() - updates_before;
    double backend_cpu = double(cpu_ns(guest.backend->pid()) - backend_before);
    double vnc_cpu = double(cpu_ns(vnc.pid) - vnc_before);
    if (client.failed())
        throw std::runtime_error("the VNC client failed");
    return { { "guest", blob ? "blob" : "2d" }, { "damage", full ? "1920x1080" : "256x256" },
        { "encoding", encoding }, { "latency", summary(latency) },
        { "vnc_cpu_per_update_us", vnc_cpu_per_update_us },
        { "streaming",
            { { "seconds", seconds }, { "flips_per_s", flips / seconds },
                { "updates_per_s", double(updates) / seconds },
                { "backend_cpu_per_flip_us", backend_cpu / flips / 1000.0 },
                { "vnc_cpu_per_update_us", updates ? vnc_cpu / double(updates) / 1000.0 : 0.0 },
                { "vnc_cpu_share", vnc_cpu / (seconds * 1e9) } } } };
}

// The same streaming flips with nobody on the export socket.
json baseline(bool blob, bool full)
{
    Guest guest(blob);
    uint64_t before = cpu_ns(guest.backend->pid());
    auto start = Clock::now();
    int flips = 0;
    while (Clock::now() - start < 3s)
        guest.flip(damage_of(full, flips++));
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return { { "guest", blob ? "blob" : "2d" }, { "damage", full ? "1920x1080" : "256x256" },
        { "flips_per_s", flips / seconds },
        { "backend_cpu_per_flip_us",
            double(cpu_ns(guest.backend->pid()) - before) / flips / 1000.0 } };
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: bench_vnc OUT.json VGPU_VNC\n");
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);
    json out;
    out["what"] = "vgpu-vnc: flip-to-client latency and CPU per update (serial), updates per "
                  "second and CPU per flip (streaming), per guest, damage and encoding; the "
                  "backend's CPU per flip without vgpu-vnc";
    out["cores"] = std::thread::hardware_concurrency();
    try {
        for (bool blob : { false, true })
            for (bool full : { true, false }) {
                out["baseline"].push_back(baseline(blob, full));
                for (const char* encoding : { "raw", "tight", "zrle" }) {
                    auto r = scenario(argv[2], blob, full, encoding);
                    std::fprintf(stderr,
                        "%-4s %-9s %-5s latency p50 %8.0f us  vnc cpu/update %8.0f us  "
                        "%6.1f updates/s (%6.1f flips/s)\n",
                        blob ? "blob" : "2d", full ? "1920x1080" : "256x256", encoding,
                        r["latency"]["p50_us"].get<double>(),
                        r["vnc_cpu_per_update_us"].get<double>(),
                        r["streaming"]["updates_per_s"].get<double>(),
                        r["streaming"]["flips_per_s"].get<double>());
                    out["runs"].push_back(r);
                }
            }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_vnc: %s\n", e.what());
        return 1;
    }
    std::ofstream(argv[1]) << out.dump(2) << "\n";
    std::cout << out.dump(2) << "\n";
    return 0;
}
