// Virtqueue round trips through the real backend process, driven by the harness as a guest
// driver would: one command per kick (latency: kick -> used entry -> interrupt), and batches of
// commands per kick (throughput of the queue walk, Reader/Writer copies and used-ring updates).
// The device is still the stub that answers every command with ERR_UNSPEC, so this measures the
// transport path alone.
#include <benchmark/benchmark.h>

#include <cstring>

#include "harness/backend_process.h"
#include "harness/frontend.h"
#include "virtio_gpu/wire.h"

namespace {

using namespace vgpu;

std::vector<std::byte> header_bytes()
{
    virtio_gpu::CtrlHdr h {};
    h.type = uint32_t(virtio_gpu::CtrlType::GetDisplayInfo);
    auto b = std::as_bytes(std::span(&h, 1));
    return { b.begin(), b.end() };
}

struct Rig {
    harness::BackendProcess backend = harness::BackendProcess::listen({ "--log-level", "error" });
    harness::QemuSession session { backend.socket_path(), { .queue_size = 256 } };
    uint64_t request = 0, response = 0;
    Rig()
    {
        session.start();
        request = session.ram().alloc(64);
        response = session.ram().alloc(64 * 256);
        session.ram().write(request, header_bytes());
    }
};

void BM_ControlRoundTrip(benchmark::State& state)
{
    Rig rig;
    auto& q = rig.session.control();
    for (auto _ : state) {
        q.add({ { rig.request, 24, false }, { rig.response, 24, true } });
        q.notify_kick();
        auto used = q.wait_used();
        if (!used) {
            state.SkipWithError("no used entry");
            break;
        }
    }
    state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_ControlRoundTrip)->UseRealTime();

void BM_ControlBatch(benchmark::State& state)
{
    Rig rig;
    auto& q = rig.session.control();
    const auto batch = int(state.range(0));
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i)
            q.add({ { rig.request, 24, false }, { rig.response + 64 * uint64_t(i), 24, true } });
        q.notify_kick();
        for (int i = 0; i < batch; ++i) {
            if (!q.wait_used()) {
                state.SkipWithError("no used entry");
                return;
            }
        }
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * batch);
}
BENCHMARK(BM_ControlBatch)->Arg(8)->Arg(32)->Arg(120)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
