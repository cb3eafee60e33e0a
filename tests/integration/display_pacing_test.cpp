// QEMU's display under load: UPDATEs are coalesced and paced, yet the newest frame always
// reaches QEMU, and a QEMU that does not read its display socket never holds the guest up.
// Assertions are about content and completion, never about timing.
#include <cstring>
#include <memory>
#include <vector>

#include "display/qemu/wire.h"
#include "harness/gpu_driver.h"
#include "integration/common.h"

namespace vgpu::integration {

using display::qemu::GpuRequest;
using display::qemu::GpuUpdate;
using harness::BackendProcess;
using harness::GpuDriver;
using harness::QemuSession;
using virtio_gpu::CtrlType;
using virtio_gpu::Rect;

namespace {

constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t width = 320, height = 200, stride = width * 4;

std::vector<std::byte> frame(uint32_t seed)
{
    std::vector<std::byte> out(size_t(stride) * height);
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = std::byte(uint8_t((i * 7 + seed * 13 + (i >> 10)) & 0xff));
    return out;
}

// Replays every UPDATE QEMU received, in order, onto a canvas: what QEMU's console shows.
std::vector<std::byte> replay_updates(const harness::DisplayPeer& peer)
{
    std::vector<std::byte> canvas(size_t(stride) * height);
    for (const auto& m : peer.messages()) {
        if (m.request != uint32_t(GpuRequest::Update))
            continue;
        GpuUpdate u;
        std::memcpy(&u, m.payload.data(), sizeof(u));
        EXPECT_LE(uint64_t(u.x) + u.width, width);
        EXPECT_LE(uint64_t(u.y) + u.height, height);
        EXPECT_EQ(m.payload.size(), sizeof(u) + size_t(u.width) * u.height * 4);
        for (uint32_t row = 0; row < u.height && u.y + row < height; ++row)
            std::memcpy(canvas.data() + size_t(u.y + row) * stride + size_t(u.x) * 4,
                m.payload.data() + sizeof(u) + size_t(row) * u.width * 4, size_t(u.width) * 4);
    }
    return canvas;
}

class DisplayPacing : public ::testing::Test {
protected:
    void SetUp() override
    {
        backend = std::make_unique<BackendProcess>(BackendProcess::listen());
        session = std::make_unique<QemuSession>(backend->socket_path());
        session->start();
        gpu = std::make_unique<GpuDriver>(*session);
        // Two framebuffers, as a page-flipping guest has.
        for (uint32_t id : { 1u, 2u })
            backing[id] = gpu->create_with_backing(id, width, height, XRGB, {});
    }
    // Draws `seed` into buffer `id` and flips to it: TRANSFER, SET_SCANOUT, fenced FLUSH.
    void flip(uint32_t id, uint32_t seed)
    {
        auto pixels = frame(seed);
        session->ram().write(backing[id], pixels);
        ASSERT_EQ(
            gpu->transfer(id, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
        ASSERT_EQ(gpu->set_scanout(0, id, Rect { 0, 0, width, height }).type,
            uint32_t(CtrlType::OkNodata));
        ASSERT_EQ(gpu->flush(id, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
    }

    std::unique_ptr<BackendProcess> backend;
    std::unique_ptr<QemuSession> session;
    std::unique_ptr<GpuDriver> gpu;
    uint64_t backing[3] {};
};

} // namespace

TEST_F(DisplayPacing, BurstOfFlips_TheNewestFrameIsWhatQemuShows)
{
    constexpr uint32_t flips = 60;
    for (uint32_t i = 0; i < flips; ++i)
        flip(1 + i % 2, i);

    auto* peer = session->display();
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(200)));
    auto shown = replay_updates(*peer);
    EXPECT_TRUE(shown == frame(flips - 1)) << "QEMU's console does not show the newest frame";
    // Coalescing never sends more than one UPDATE per flush.
    EXPECT_LE(peer->count(uint32_t(GpuRequest::Update)), size_t(flips));
    EXPECT_TRUE(backend->alive());
}

TEST_F(DisplayPacing, QemuNotReading_GuestKeepsFlippingAndGetsItsFences)
{
    auto* peer = session->display();
    peer->set_reading_paused(true);
    // Far more frame data than the socket buffer holds: every command must still complete.
    constexpr uint32_t flips = 80;
    for (uint32_t i = 0; i < flips; ++i)
        flip(1 + i % 2, 1000 + i);
    auto fenced = session->control_round_trip(
        ctrl_header(CtrlType::GetDisplayInfo, virtio_gpu::FLAG_FENCE, 77),
        sizeof(virtio_gpu::RespDisplayInfo));
    EXPECT_TRUE(fenced.has_value());

    // QEMU reads again: what it ends up showing is the newest frame.
    peer->set_reading_paused(false);
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(300), std::chrono::milliseconds(10000)));
    auto shown = replay_updates(*peer);
    EXPECT_TRUE(shown == frame(1000 + flips - 1))
        << "QEMU's console does not show the newest frame";
    EXPECT_TRUE(backend->alive());
}

} // namespace vgpu::integration
