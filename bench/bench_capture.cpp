// The cost of CRC capture per page flip at 1920x1080, through the real backend process driven by
// the harness as a guest driver would (TRANSFER of the whole frame, SET_SCANOUT, RESOURCE_FLUSH,
// alternating two framebuffers), without a display socket. Capture off and on run in the same
// process run, one after the other; the difference per flip is the capture's cost. Reported both
// as wall time per flip (submit to used entry) and as the backend's CPU time per flip (from
// /proc/PID/stat), which is what the capture adds on the device loop.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "harness/backend_process.h"
#include "harness/control_client.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"

namespace {

using namespace vgpu;

// utime + stime of a process, in seconds.
double process_cpu_seconds(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = text.rfind(')');
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

void BM_Flip(benchmark::State& state, uint32_t width, uint32_t height)
{
    const bool capture = state.range(0) != 0;
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = harness::BackendProcess::listen(
        { "--log-level", "error", "--control", control_path, "--output",
            std::to_string(width) + "x" + std::to_string(height), "--max-hostmem", "1G" });
    harness::SessionOptions options;
    options.with_display_socket = false;
    harness::QemuSession session(backend.socket_path(), options);
    session.start();
    harness::GpuDriver gpu(session);
    auto control = harness::ControlClient::connect(control_path);
    const virtio_gpu::Rect full { 0, 0, width, height };
    std::vector<std::byte> pixels(size_t(width) * height * 4);
    for (size_t i = 0; i < pixels.size(); ++i)
        pixels[i] = std::byte(uint8_t(i * 31 + (i >> 12)));
    for (uint32_t id : { 1u, 2u })
        gpu.create_with_backing(
            id, width, height, uint32_t(virtio_gpu::Format::B8G8R8X8Unorm), pixels);
    if (capture)
        control.call("crc-start", { { "output", 0 } });

    uint64_t flips = 0;
    double cpu_before = process_cpu_seconds(backend.pid());
    for (auto _ : state) {
        uint32_t id = 1 + uint32_t(flips % 2);
        if (gpu.transfer(id, full).type != uint32_t(virtio_gpu::CtrlType::OkNodata)
            || gpu.set_scanout(0, id, full).type != uint32_t(virtio_gpu::CtrlType::OkNodata)
            || gpu.flush(id, full).type != uint32_t(virtio_gpu::CtrlType::OkNodata)) {
            state.SkipWithError("a command failed");
            break;
        }
        ++flips;
        if (capture && flips % 100 == 0)
            control.call("crc-read", { { "output", 0 } }); // keep the ring from overflowing
    }
    double cpu = process_cpu_seconds(backend.pid()) - cpu_before;
    if (capture) {
        auto stopped = control.call("crc-stop", { { "output", 0 } });
        state.counters["overflow"] = double(stopped["overflow"].get<uint64_t>());
    }
    state.counters["backend_cpu_us_per_flip"] = flips ? cpu * 1e6 / double(flips) : 0;
    state.counters["bytes_per_flip"] = double(pixels.size());
    state.SetItemsProcessed(int64_t(flips));
    state.SetLabel(capture ? "crc capture on" : "crc capture off");
}

void BM_Flip1080p(benchmark::State& state) { BM_Flip(state, 1920, 1080); }
BENCHMARK(BM_Flip1080p)
    ->Arg(0)
    ->Arg(1)
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(1.0);

} // namespace

BENCHMARK_MAIN();
