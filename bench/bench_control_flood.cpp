// The guest's control-queue round trip while a control client floods the backend with
// screendumps (issue 9, item 4): the same backend and guest session, measured first quiet, then
// while a client has 2000 screendumps of a 1920x1080 frame pipelined on the control socket, for
// the same time each. A round trip is a GET_DISPLAY_INFO answered from our own outputs (no
// display socket): kick to used entry, through the real backend process. Writes JSON (default
// bench/results/control_flood.json).
//
//   bench_control_flood [OUT.json [SECONDS_PER_PHASE]]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/backend_process.h"
#include "harness/control_client.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "virtio_gpu/wire.h"

namespace {

using namespace vgpu;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint32_t WIDTH = 1920, HEIGHT = 1080;
constexpr int SCREENDUMPS = 2000;

struct Latencies {
    std::vector<double> us;
    json summary() const
    {
        auto sorted = us;
        std::sort(sorted.begin(), sorted.end());
        auto at = [&](double q) { return sorted[size_t(q * double(sorted.size() - 1))]; };
        return { { "count", sorted.size() }, { "p50_us", at(0.50) }, { "p90_us", at(0.90) },
            { "p99_us", at(0.99) }, { "p999_us", at(0.999) }, { "max_us", sorted.back() } };
    }
};

// One GET_DISPLAY_INFO round trip; throws when no used entry comes.
double round_trip(harness::QemuSession& session, uint64_t request, uint64_t response)
{
    auto& q = session.control();
    auto begin = Clock::now();
    q.add({ { request, 24, false },
        { response, uint32_t(sizeof(virtio_gpu::RespDisplayInfo)), true } });
    q.notify_kick();
    if (!q.wait_used(std::chrono::seconds(10)))
        throw std::runtime_error("no used entry");
    return std::chrono::duration<double, std::micro>(Clock::now() - begin).count();
}

std::string screendump_lines(const std::string& file, int count)
{
    std::string lines;
    for (int i = 0; i < count; ++i)
        lines += json { { "execute", "screendump" },
            { "arguments", { { "output", 0 }, { "filename", file } } },
            { "id",
                i } }.dump()
            + "\n";
    return lines;
}

} // namespace

int main(int argc, char** argv)
{
    std::string out = argc > 1 ? argv[1] : "bench/results/control_flood.json";
    double seconds = argc > 2 ? std::stod(argv[2]) : 5.0;
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = harness::BackendProcess::listen(
        { "--control", control_path, "--output", "1920x1080", "--log-level", "error" });
    harness::QemuSession session(backend.socket_path(), { .with_display_socket = false });
    session.start();
    harness::GpuDriver gpu(session);
    std::vector<std::byte> pixels(size_t(WIDTH) * HEIGHT * 4);
    for (size_t i = 0; i < pixels.size(); ++i)
        pixels[i] = std::byte(uint8_t((i * 29 + (i >> 12) * 7) & 0xff));
    gpu.create_with_backing(1, WIDTH, HEIGHT, uint32_t(virtio_gpu::Format::B8G8R8X8Unorm), pixels);
    gpu.transfer(1, { 0, 0, WIDTH, HEIGHT });
    gpu.set_scanout(0, 1, { 0, 0, WIDTH, HEIGHT });
    gpu.flush(1, { 0, 0, WIDTH, HEIGHT });

    auto& ram = session.ram();
    uint64_t request = ram.alloc(64);
    virtio_gpu::CtrlHdr header {};
    header.type = uint32_t(virtio_gpu::CtrlType::GetDisplayInfo);
    ram.put(request, header);
    uint64_t response = ram.alloc(sizeof(virtio_gpu::RespDisplayInfo));
    for (int i = 0; i < 500; ++i) // warm up
        round_trip(session, request, response);

    auto phase = [&] {
        Latencies latencies;
        auto end = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < end)
            latencies.us.push_back(round_trip(session, request, response));
        return latencies;
    };
    Latencies quiet = phase();

    // The flood: a client with 2000 screendumps pipelined; it reads its replies so that the
    // backend never waits on it.
    std::vector<harness::ControlClient> flooders;
    for (int c = 0; c < 1; ++c)
        flooders.push_back(harness::ControlClient::connect(control_path));
    std::atomic<bool> stop { false };
    std::atomic<uint64_t> replies { 0 }, busy { 0 };
    std::vector<std::thread> writers, readers;
    for (int c = 0; c < 1; ++c) {
        auto* client = &flooders[size_t(c)];
        auto lines = screendump_lines(dir + "/flood-" + std::to_string(c) + ".png", SCREENDUMPS);
        writers.emplace_back([client, lines] { client->send_raw(lines); });
        readers.emplace_back([client, &stop, &replies, &busy] {
            while (!stop) {
                auto reply = client->read_message(std::chrono::milliseconds(100));
                if (!reply)
                    continue;
                ++replies;
                if (reply->contains("error") && (*reply)["error"]["class"] == "Busy")
                    ++busy;
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200)); // the requests are queued
    uint64_t answered_before = replies;
    Latencies flood = phase();
    uint64_t answered = replies - answered_before;
    stop = true;
    for (auto& t : writers)
        t.join();
    for (auto& t : readers)
        t.join();
    auto stats = harness::ControlClient::connect(control_path).call("query-stats")["control"];

    char date[32];
    std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    json doc = {
        { "benchmark", "control_flood" },
        { "date", date },
        { "what",
            "GET_DISPLAY_INFO round trips through the real backend, quiet and while a control "
            "client has 2000 screendumps of a 1920x1080 frame pipelined" },
        { "size", { WIDTH, HEIGHT } },
        { "seconds_per_phase", seconds },
        { "quiet", quiet.summary() },
        { "flood", flood.summary() },
        { "screendump_replies_during_flood", answered },
        { "screendumps_busy_during_flood", uint64_t(busy) },
        { "backend_stats", stats },
    };
    doc["p99_ratio"] = doc["flood"]["p99_us"].get<double>() / doc["quiet"]["p99_us"].get<double>();
    std::ofstream(out) << doc.dump(2) << "\n";
    std::cout << doc.dump(2) << "\n";
    return 0;
}
