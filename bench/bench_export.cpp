// The export socket's benchmark (issue 12): through the real backend process driven by the
// harness's frontend, with consumers in other processes or threads.
//  1. Flip to consumer wake-up: from the frontend's kick of a RESOURCE_FLUSH to a consumer
//     process returning from poll() on its lease's eventfd (both read CLOCK_MONOTONIC), split at
//     the backend's signal (FLIP's time_ns), against a plain eventfd between the same two
//     processes, one write to one wake-up, in the same run; with the scheduler placing everything
//     and with the consumer pinned alone to CPU 1 (frontend and backend on CPU 0); 5 rounds of
//     each, reported: the round of the median p99/p50 and every round's ratio.
//  2. Bytes the backend copies per flip for 1920x1080 page flips with one exclusive (acking every
//     flip) and three shared consumers: a 2D guest, a blob guest (REGION leases: the ring copy),
//     a blob guest with --export-guest-memory (GUEST_MEMORY leases: none).
//  3. vgpu-view at 1920x1080 under Xvfb (when both are given/found): frames shown per second
//     and vgpu-view's CPU per frame shown, while the frontend flips whole frames at 60 Hz and
//     as fast as it can (then all compete for the 2 cores).
// Writes JSON (default bench/results/export.json).
//
//   bench_export [OUT.json [VGPU_VIEW]]
//   bench_export --wakeup-only FLIPS                 (part 1 only, JSON on stdout)
//   bench_export --consumer EXPORT_SOCKET OUT_FD      (internal: the wake-up consumer)
//   bench_export --eventfd-consumer EVENT_FD OUT_FD   (internal: the plain eventfd baseline)
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "export/client.h"
#include "harness/backend_process.h"
#include "harness/control_client.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "stats.h"
#include "virtio_gpu/formats.h"

namespace {

using namespace vgpu;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace ex = vgpu::exporting;
using virtio_gpu::Rect;

constexpr uint32_t W = 1920, H = 1080;
constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);

using bench::summary;

// ---- the consumer processes ----------------------------------------------------------------

// One wake-up: when the consumer returned from poll(), and when the backend says it signalled
// (FLIP's time_ns; 0 for the plain eventfd).
struct Wake {
    uint64_t woken = 0;
    uint64_t signalled = 0;
};

// Waits on `fd` (an eventfd), and for each wake-up writes a Wake to `out`; `drain` reads
// whatever else must be read (the export socket's records) and returns the signal time.
template <typename Drain>
int wake_loop(int fd, int out, Drain drain)
{
    for (;;) {
        pollfd p { fd, POLLIN, 0 };
        if (::poll(&p, 1, 10000) <= 0)
            return 0;
        Wake w { ex::monotonic_ns(), 0 };
        uint64_t count = 0;
        if (::read(fd, &count, sizeof(count)) != ssize_t(sizeof(count)))
            return 1;
        w.signalled = drain();
        if (::write(out, &w, sizeof(w)) != ssize_t(sizeof(w)))
            return 0; // the parent is done
    }
}

int consumer_main(const std::string& path, int out)
{
    auto client = ex::Client::connect(path, "bench-wakeup");
    if (!client)
        return 1;
    auto lease = client->lease(0, ex::LeaseKind::Shared);
    if (!lease)
        return 1;
    Wake ready;
    if (::write(out, &ready, sizeof(ready)) != ssize_t(sizeof(ready)))
        return 1;
    // The eventfd is signalled before the FLIP is sent: wait for it.
    return wake_loop(lease->eventfd.get(), out, [&]() -> uint64_t {
        for (;;) {
            auto m = client->next(100ms);
            if (!m || !*m)
                return 0;
            if (auto flip = (*m)->as<ex::Flip>())
                return flip->time_ns;
        }
    });
}

// ---- the parent -----------------------------------------------------------------------------

struct Child {
    pid_t pid = -1;
    int in = -1; // its timestamps
};

Child spawn(const std::vector<std::string>& args)
{
    int p[2];
    if (::pipe(p) != 0)
        throw std::runtime_error("pipe");
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        std::vector<std::string> full = args;
        full.push_back(std::to_string(p[1]));
        std::vector<char*> argv;
        std::string self = "/proc/self/exe";
        argv.push_back(self.data());
        for (auto& a : full)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv("/proc/self/exe", argv.data());
        ::_exit(127);
    }
    ::close(p[1]);
    return { pid, p[0] };
}

Wake read_wake(const Child& c)
{
    Wake w;
    pollfd p { c.in, POLLIN, 0 };
    if (::poll(&p, 1, 5000) != 1 || ::read(c.in, &w, sizeof(w)) != ssize_t(sizeof(w)))
        throw std::runtime_error("the consumer did not wake up");
    return w;
}

void finish(Child& c)
{
    ::close(c.in);
    ::kill(c.pid, SIGTERM);
    ::waitpid(c.pid, nullptr, 0);
}

struct Rig {
    std::string dir, export_path, control_path;
    std::unique_ptr<harness::BackendProcess> backend;
    std::unique_ptr<harness::QemuSession> session;
    std::unique_ptr<harness::GpuDriver> gpu;
    std::unique_ptr<harness::ControlClient> control;

    explicit Rig(std::vector<std::string> args)
    {
        dir = harness::make_temp_dir();
        export_path = dir + "/export.sock";
        control_path = dir + "/control.sock";
        args.insert(args.end(), { "--export", export_path, "--control", control_path });
        backend = std::make_unique<harness::BackendProcess>(harness::BackendProcess::listen(args));
        harness::SessionOptions options;
        options.with_display_socket = false;
        options.ram_low = uint64_t(160) << 20;
        session = std::make_unique<harness::QemuSession>(backend->socket_path(), options);
        session->start();
        gpu = std::make_unique<harness::GpuDriver>(*session);
        control = std::make_unique<harness::ControlClient>(
            harness::ControlClient::connect(control_path));
    }
    json export_stats() { return control->call("query-stats")["export"]; }
};

std::vector<std::byte> frame(uint32_t seed)
{
    std::vector<std::byte> out(size_t(W) * H * 4);
    for (size_t i = 0; i < out.size(); i += 4)
        out[i] = std::byte(uint8_t(i / 4 + seed));
    return out;
}

// Pins every thread of `pid` to `cpu` (placement "pinned"); a no-op for "any".
void place(pid_t pid, int cpu, bool pinned)
{
    if (!pinned)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid)))
        if (::sched_setaffinity(std::stoi(task.path().filename()), sizeof(set), &set) != 0)
            throw std::runtime_error(fmt::format("sched_setaffinity: {}", std::strerror(errno)));
}

// placement "any": the scheduler places everything; "pinned": this process (the frontend) and
// the backend on CPU 0, the consumer alone on CPU 1.
json wakeup(int flips, bool pinned)
{
    // The baseline: one eventfd between this process and a child.
    std::vector<double> plain;
    {
        int efd = ::eventfd(0, 0); // inherited by the child
        Child c = spawn({ "--eventfd-consumer", std::to_string(efd) });
        place(::getpid(), 0, pinned);
        place(c.pid, 1, pinned);
        for (int i = 0; i < flips; ++i) {
            uint64_t t0 = ex::monotonic_ns(), one = 1;
            if (::write(efd, &one, sizeof(one)) != ssize_t(sizeof(one)))
                throw std::runtime_error("eventfd write");
            plain.push_back(double(read_wake(c).woken - t0) / 1000.0);
            std::this_thread::sleep_for(200us);
        }
        finish(c);
        ::close(efd);
    }
    // A flush of the shown 2D resource, its damage a 64x64 square.
    Rig rig({});
    rig.gpu->create_with_backing(1, W, H, XRGB, frame(1));
    Rect all { 0, 0, W, H };
    rig.gpu->transfer(1, all);
    rig.gpu->set_scanout(0, 1, all);
    rig.gpu->flush(1, all);
    Child c = spawn({ "--consumer", rig.export_path });
    read_wake(c); // leased
    read_wake(c); // the lease's first FLIP
    place(::getpid(), 0, pinned);
    place(rig.backend->pid(), 0, pinned);
    place(c.pid, 1, pinned);
    // flip = kick to wake-up = kick to the backend's signal (FLIP's time_ns) + signal to wake-up.
    std::vector<double> flip, to_signal, to_wake, response;
    for (int i = 0; i < flips; ++i) {
        Rect damage { uint32_t(i % 16) * 64, 0, 64, 64 };
        uint64_t t0 = ex::monotonic_ns();
        rig.gpu->flush(1, damage);
        uint64_t answered = ex::monotonic_ns();
        Wake w = read_wake(c);
        if (w.signalled < t0 || w.signalled > w.woken)
            throw std::runtime_error("a FLIP's time_ns is outside its flush and wake-up");
        flip.push_back(double(w.woken - t0) / 1000.0);
        to_signal.push_back(double(w.signalled - t0) / 1000.0);
        to_wake.push_back(double(w.woken - w.signalled) / 1000.0);
        response.push_back(double(answered - t0) / 1000.0);
        std::this_thread::sleep_for(200us);
    }
    finish(c);
    json out = { { "placement", pinned ? "pinned" : "any" }, { "eventfd", summary(plain) },
        { "flip", summary(flip) }, { "kick_to_signal", summary(to_signal) },
        { "signal_to_wakeup", summary(to_wake) }, { "flush_response", summary(response) } };
    out["ratio_p50"] = out["flip"]["p50_us"].get<double>() / out["eventfd"]["p50_us"].get<double>();
    out["flip_p99_over_p50"] = out["flip"]["p99_us"].get<double>()
        / out["flip"]["p50_us"].get<double>();
    return out;
}

// `rounds` rounds of wakeup(): all their p99/p50 ratios, and the round of the median ratio (the
// tail on a 2-core VM varies from round to round: one round alone says little about it).
json wakeup_rounds(int rounds, int flips, bool pinned)
{
    std::vector<json> all;
    for (int i = 0; i < rounds; ++i)
        all.push_back(wakeup(flips, pinned));
    std::sort(all.begin(), all.end(), [](const json& a, const json& b) {
        return a["flip_p99_over_p50"].get<double>() < b["flip_p99_over_p50"].get<double>();
    });
    json median = all[all.size() / 2];
    median["rounds"] = rounds;
    median["round_ratios"] = json::array();
    for (const auto& r : all)
        median["round_ratios"].push_back(r["flip_p99_over_p50"]);
    return median;
}

// Four consumers on threads: lease 0 exclusive (acks every FLIP), 1..3 shared.
class Consumers {
public:
    Consumers(const std::string& path, uint32_t plane)
    {
        for (int i = 0; i < 4; ++i)
            m_threads.emplace_back([this, path, plane, i] { run(path, plane, i == 0); });
        while (m_ready < 4)
            std::this_thread::sleep_for(1ms);
    }
    ~Consumers()
    {
        m_stop = true;
        for (auto& t : m_threads)
            t.join();
    }
    uint64_t flips() const { return m_flips; }

private:
    void run(const std::string& path, uint32_t plane, bool exclusive)
    {
        auto client = ex::Client::connect(path, exclusive ? "exclusive" : "shared");
        if (!client)
            throw std::runtime_error(client.error().message);
        auto lease = client->lease(
            0, exclusive ? ex::LeaseKind::Exclusive : ex::LeaseKind::Shared, plane);
        if (!lease)
            throw std::runtime_error(lease.error().message);
        ++m_ready;
        while (!m_stop) {
            auto m = client->next(20ms);
            if (!m)
                return;
            if (!*m)
                continue;
            if (auto f = (*m)->as<ex::Flip>()) {
                ++m_flips;
                if (exclusive)
                    (void)client->ack(lease->lease, f->generation);
            }
        }
    }
    std::vector<std::thread> m_threads;
    std::atomic<int> m_ready { 0 };
    std::atomic<bool> m_stop { false };
    std::atomic<uint64_t> m_flips { 0 };
};

json copies(const char* name, bool blob, bool guest_memory, int flips)
{
    std::vector<std::string> args;
    if (blob)
        args.push_back("--blob");
    if (guest_memory)
        args.push_back("--export-guest-memory");
    Rig rig(args);
    Rect all { 0, 0, W, H };
    std::vector<harness::ScatteredBuffer> blobs;
    for (uint32_t id = 1; id <= 2; ++id) {
        if (blob) {
            auto b = harness::ScatteredBuffer::allocate(
                rig.session->ram(), uint64_t(W) * H * 4, id);
            b.write(rig.session->ram(), 0, frame(id));
            rig.gpu->create_blob(id, b.size, b.entries);
            blobs.push_back(b);
        } else {
            rig.gpu->create_with_backing(id, W, H, XRGB, frame(id));
            rig.gpu->transfer(id, all);
        }
    }
    auto show = [&](uint32_t id, uint64_t fence) {
        if (blob)
            rig.gpu->set_scanout_blob(0, id, W, H, XRGB, W * 4, 0, all);
        else {
            rig.gpu->transfer(id, all);
            rig.gpu->set_scanout(0, id, all);
        }
        return rig.gpu->flush_fenced(id, all, fence).type;
    };
    show(1, 1);
    Consumers consumers(rig.export_path, guest_memory ? ex::PLANE_GUEST_MEMORY : ex::PLANE_REGION);
    std::this_thread::sleep_for(100ms);
    uint64_t before = rig.export_stats()["bytes-copied"];
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < flips; ++i)
        if (show(uint32_t(i % 2) + 1, uint64_t(i) + 2) != uint32_t(virtio_gpu::CtrlType::OkNodata))
            throw std::runtime_error("a flip failed");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::this_thread::sleep_for(100ms);
    auto s = rig.export_stats();
    uint64_t copied = s["bytes-copied"].get<uint64_t>() - before;
    auto device = rig.control->call("query-stats");
    return { { "config", name }, { "flips", flips }, { "frame_bytes", uint64_t(W) * H * 4 },
        { "bytes_copied_per_flip", double(copied) / flips }, { "flips_per_s", flips / seconds },
        { "consumer_flip_records", consumers.flips() }, { "ack_timeouts", s["ack-timeouts"] },
        { "transfer_waits", device["transfer-waits"] },
        { "release_waits", device["blob"]["release-waits"] } };
}

// /proc/PID/stat utime + stime, in seconds.
double cpu_seconds(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = text.rfind(')');
    if (close == std::string::npos)
        return 0;
    std::vector<std::string> fields;
    std::string field;
    for (char ch : text.substr(close + 2))
        if (ch == ' ') {
            fields.push_back(field);
            field.clear();
        } else
            field += ch;
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the command.
    return fields.size() > 12
        ? double(std::stoull(fields[11]) + std::stoull(fields[12])) / double(::sysconf(_SC_CLK_TCK))
        : 0;
}

// `rate`: the frontend's flips per second (a 60 Hz guest), 0: as fast as it can.
json view(const std::string& binary, double seconds, double rate)
{
    if (binary.empty() || ::access(binary.c_str(), X_OK) != 0)
        return { { "skipped", "no vgpu-view binary given" } };
    // Xvfb on a display it picks.
    int p[2];
    if (::pipe(p) != 0)
        throw std::runtime_error("pipe");
    pid_t xvfb = ::fork();
    if (xvfb == 0) {
        ::close(p[0]);
        std::string fd = std::to_string(p[1]);
        ::execlp("Xvfb", "Xvfb", "-displayfd", fd.c_str(), "-screen", "0", "1920x1200x24",
            "-nolisten", "tcp", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(p[1]);
    char number[16] {};
    ssize_t n = ::read(p[0], number, sizeof(number) - 1);
    ::close(p[0]);
    if (n <= 0)
        return { { "skipped", "Xvfb did not start" } };
    std::string display = ":" + std::string(number, size_t(n - (number[n - 1] == '\n')));

    Rig rig({});
    Rect all { 0, 0, W, H };
    for (uint32_t id = 1; id <= 2; ++id) {
        rig.gpu->create_with_backing(id, W, H, XRGB, frame(id));
        rig.gpu->transfer(id, all);
    }
    rig.gpu->set_scanout(0, 1, all);
    rig.gpu->flush(1, all);
    int out[2];
    if (::pipe(out) != 0)
        throw std::runtime_error("pipe");
    pid_t viewer = ::fork();
    if (viewer == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::setenv("DISPLAY", display.c_str(), 1);
        ::setenv("SDL_VIDEODRIVER", "x11", 1);
        ::execl(binary.c_str(), binary.c_str(), "--export", rig.export_path.c_str(), "--scale", "1",
            "--renderer", "software", "--print-frames", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    // Frames shown, as vgpu-view prints them, counted on a thread while this one flips.
    std::atomic<uint64_t> shown { 0 };
    std::atomic<uint64_t> first_ns { 0 }, last_ns { 0 };
    std::atomic<double> cpu_first { 0 };
    std::thread reader([&] {
        FILE* f = ::fdopen(out[0], "r");
        char line[256];
        while (f && std::fgets(line, sizeof(line), f))
            if (std::strncmp(line, "shown ", 6) == 0) {
                if (shown++ == 0) {
                    first_ns = ex::monotonic_ns();
                    cpu_first = cpu_seconds(viewer);
                }
                last_ns = ex::monotonic_ns();
            }
        if (f)
            std::fclose(f);
    });
    while (shown == 0)
        std::this_thread::sleep_for(10ms);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    uint64_t flips = 0;
    auto next = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < deadline) {
        uint32_t id = uint32_t(flips % 2) + 1;
        rig.gpu->transfer(id, all);
        rig.gpu->set_scanout(0, id, all);
        rig.gpu->flush(id, all);
        ++flips;
        if (rate > 0) {
            next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(1.0 / rate));
            std::this_thread::sleep_until(next);
        }
    }
    std::this_thread::sleep_for(200ms);
    double cpu = cpu_seconds(viewer) - cpu_first;
    uint64_t frames = shown - 1, span = last_ns - first_ns;
    auto stats = rig.export_stats();
    ::kill(viewer, SIGTERM);
    ::waitpid(viewer, nullptr, 0);
    reader.join();
    ::kill(xvfb, SIGTERM);
    ::waitpid(xvfb, nullptr, 0);
    return { { "mode", "1920x1080" }, { "renderer", "software (SDL), Xvfb" },
        { "guest", rate > 0 ? fmt::format("{:.0f} flips/s", rate) : std::string("flood") },
        { "backend_flips_per_s", double(flips) / seconds },
        { "frames_shown_per_s", double(frames) / (double(span) / 1e9) },
        { "cpu_ms_per_frame", frames ? cpu * 1000.0 / double(frames) : 0.0 },
        { "cpu_cores", cpu / (double(span) / 1e9) }, { "frames", frames },
        { "backend_bytes_copied", stats["bytes-copied"] } };
}

} // namespace

int main(int argc, char** argv)
{
    if (argc == 4 && std::string(argv[1]) == "--consumer")
        return consumer_main(argv[2], std::stoi(argv[3]));
    if (argc == 4 && std::string(argv[1]) == "--eventfd-consumer") {
        int out = std::stoi(argv[3]);
        return wake_loop(std::stoi(argv[2]), out, [] { return uint64_t(0); });
    }
    ::signal(SIGPIPE, SIG_IGN);
    std::string path = argc > 1 ? argv[1] : "bench/results/export.json";
    std::string viewer = argc > 2 ? argv[2] : "";
    try {
        if (argc == 3 && path == "--wakeup-only") { // a quick look: both placements
            json both = { wakeup(std::stoi(argv[2]), false), wakeup(std::stoi(argv[2]), true) };
            std::cout << both.dump(2) << "\n";
            return 0;
        }
        json result;
        std::time_t t = std::time(nullptr);
        char date[32];
        std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
        result["date"] = date;
        result["cores"] = std::thread::hardware_concurrency();
        std::cerr << "bench_export: flip to consumer wake-up vs a plain eventfd\n";
        result["wakeup"] = wakeup_rounds(5, 2000, false);
        result["wakeup_pinned"] = wakeup_rounds(5, 2000, true);
        std::cerr << "bench_export: bytes copied per flip, 1 exclusive + 3 shared consumers\n";
        result["copies"] = json::array({ copies("2d", false, false, 100),
            copies("blob", true, false, 100), copies("blob-guest-memory", true, true, 100) });
        std::cerr << "bench_export: vgpu-view at 1920x1080\n";
        result["view"] = json::array({ view(viewer, 5.0, 60.0), view(viewer, 5.0, 0.0) });
        std::ofstream(path) << result.dump(2) << "\n";
        std::cout << result.dump(2) << "\n";
    } catch (const std::exception& e) {
        std::cerr << "bench_export: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
