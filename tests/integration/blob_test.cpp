// Blob resources through the real backend process, driven as the Linux 6.1 driver drives them
// with blobs on (RESOURCE_CREATE_BLOB of scattered guest pages, SET_SCANOUT_BLOB, a fenced
// RESOURCE_FLUSH for every update, reuse of the old framebuffer once the fence is back): every
// command and error case of docs/hostile-guest.md, pixels and CRCs read in place, the release
// fence against a sink that is slow or stuck, and memory-table changes while a blob is shown.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/crc32c.h"
#include "display/qemu/wire.h"
#include "harness/control_client.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "integration/common.h"
#include "vhost/wire.h"

namespace vgpu::integration {

using display::qemu::GpuRequest;
using harness::BackendProcess;
using harness::ControlClient;
using harness::DisplayMessage;
using harness::GpuDriver;
using harness::QemuSession;
using harness::ScatteredBuffer;
using nlohmann::json;
using virtio_gpu::CtrlHdr;
using virtio_gpu::CtrlType;
using virtio_gpu::MemEntry;
using virtio_gpu::Rect;

namespace {

constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t ARGB = uint32_t(virtio_gpu::Format::B8G8R8A8Unorm);
constexpr uint32_t OK = uint32_t(CtrlType::OkNodata);
constexpr uint32_t UNSPEC = uint32_t(CtrlType::ErrUnspec);
constexpr uint32_t INVALID_PARAMETER = uint32_t(CtrlType::ErrInvalidParameter);
constexpr uint32_t INVALID_RESOURCE = uint32_t(CtrlType::ErrInvalidResourceId);

// B, G, R and a padding byte of 0 per pixel, different for each seed.
std::vector<std::byte> picture(uint32_t width, uint32_t height, uint32_t seed)
{
    std::vector<std::byte> out(size_t(width) * height * 4);
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = i % 4 == 3 ? std::byte(0)
                            : std::byte(uint8_t((i * 7 + (i / 4096) * 13 + seed * 101) & 0xff));
    return out;
}

uint32_t frame_crc(const std::vector<std::byte>& pixels)
{
    return crc::crc32c_xrgb(0, reinterpret_cast<const uint32_t*>(pixels.data()), pixels.size() / 4);
}

// The pixels of a full-frame UPDATE (empty for any other message).
std::span<const std::byte> update_pixels(const DisplayMessage& m, uint32_t width, uint32_t height)
{
    display::qemu::GpuUpdate u {};
    if (m.payload.size() < sizeof(u))
        return {};
    std::memcpy(&u, m.payload.data(), sizeof(u));
    if (u.x != 0 || u.y != 0 || u.width != width || u.height != height
        || m.payload.size() != sizeof(u) + size_t(width) * height * 4)
        return {};
    return std::span(m.payload).subspan(sizeof(u));
}

bool same(std::span<const std::byte> a, const std::vector<std::byte>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// A frame larger than the display socket's send buffer (8 MiB here: SO_SNDBUF asks for 8 MiB,
// capped at wmem_max and doubled), so that a QEMU that does not read keeps its UPDATE in flight.
constexpr uint32_t BIG_W = 2560, BIG_H = 1600;

harness::SessionOptions big_ram()
{
    harness::SessionOptions options;
    options.ram_low = uint64_t(160) << 20;
    return options;
}

class Blob : public ::testing::Test {
protected:
    void start(std::vector<std::string> args = { "--blob" }, harness::SessionOptions options = {})
    {
        // Again in the same test: the previous backend and its clients go first.
        control.reset();
        gpu.reset();
        session.reset();
        backend.reset();
        dir = harness::make_temp_dir();
        control_path = dir + "/control.sock";
        args.insert(args.begin(), { "--control", control_path });
        backend = std::make_unique<BackendProcess>(BackendProcess::listen(args));
        session = std::make_unique<QemuSession>(backend->socket_path(), options);
        session->start();
        gpu = std::make_unique<GpuDriver>(*session);
        control = std::make_unique<ControlClient>(ControlClient::connect(control_path));
    }
    void TearDown() override
    {
        if (backend) {
            EXPECT_TRUE(backend->alive()) << backend->log();
        }
    }
    void expect_serving()
    {
        auto info = gpu->get_display_info();
        EXPECT_TRUE(info && info->hdr.type == uint32_t(CtrlType::OkDisplayInfo))
            << "the backend stopped serving";
        EXPECT_TRUE(backend->alive()) << backend->log();
    }
    // A blob of width x height XRGB pixels in scattered pages holding `pixels`.
    ScatteredBuffer make_blob(uint32_t id, uint32_t width, uint32_t height,
        const std::vector<std::byte>& pixels, uint32_t seed)
    {
        auto buffer = ScatteredBuffer::allocate(session->ram(), uint64_t(width) * height * 4, seed);
        buffer.write(session->ram(), 0, pixels);
        EXPECT_EQ(gpu->create_blob(id, buffer.size, buffer.entries).type, OK);
        return buffer;
    }
    CtrlHdr show(uint32_t scanout, uint32_t id, uint32_t width, uint32_t height)
    {
        return gpu->set_scanout_blob(
            scanout, id, width, height, XRGB, width * 4, 0, Rect { 0, 0, width, height });
    }
    json stats() { return control->call("query-stats"); }
    // Waits for a full-frame UPDATE with exactly these pixels.
    bool wait_for_frame(const std::vector<std::byte>& pixels, uint32_t width, uint32_t height)
    {
        return session->display()
            ->wait_for_matching(uint32_t(GpuRequest::Update),
                [&](const DisplayMessage& m) {
                    return same(update_pixels(m, width, height), pixels);
                })
            .has_value();
    }

    std::string dir, control_path;
    std::unique_ptr<BackendProcess> backend;
    std::unique_ptr<QemuSession> session;
    std::unique_ptr<GpuDriver> gpu;
    std::unique_ptr<ControlClient> control;
};

#define EXPECT_ANSWER(command, expected)                                                           \
    do {                                                                                           \
        EXPECT_EQ((command).type, uint32_t(expected)) << #command;                                 \
        expect_serving();                                                                          \
    } while (0)

// ---- when blob commands are accepted ------------------------------------------------------------

TEST_F(Blob, WithoutTheFlagOrTheFeature_BlobCommandsAnswerErrInvalidParameter)
{
    start({});
    EXPECT_NE(session->offered_features() & (uint64_t(1) << virtio_gpu::F_RESOURCE_BLOB), 0u)
        << "the backend offers RESOURCE_BLOB to frontends that pass it through";
    EXPECT_EQ(session->acked_features() & (uint64_t(1) << virtio_gpu::F_RESOURCE_BLOB), 0u);
    auto buffer = ScatteredBuffer::allocate(session->ram(), 4096, 1);
    EXPECT_ANSWER(gpu->create_blob(1, 4096, buffer.entries), INVALID_PARAMETER);
    EXPECT_ANSWER(show(0, 1, 32, 32), INVALID_PARAMETER);
    auto caps = control->call("query-capabilities");
    EXPECT_EQ(caps["blob-enabled"], false);
    EXPECT_EQ(caps["vgpu-display"]["blob"]["forced"], false);
}

TEST_F(Blob, NegotiatedFeature_EnablesBlobsWithoutTheFlag)
{
    harness::SessionOptions options;
    options.device_features_passed = ~uint64_t(0); // a frontend that passes features through
    start({}, options);
    ASSERT_NE(session->acked_features() & (uint64_t(1) << virtio_gpu::F_RESOURCE_BLOB), 0u);
    auto pixels = picture(32, 32, 1);
    make_blob(1, 32, 32, pixels, 1);
    EXPECT_ANSWER(show(0, 1, 32, 32), OK);
    EXPECT_EQ(control->call("query-capabilities")["blob-enabled"], true);
}

TEST_F(Blob, TheFlag_IsSaidInCapabilities)
{
    start({ "--blob", "--release-timeout", "7" });
    auto caps = control->call("query-capabilities");
    EXPECT_EQ(caps["blob-enabled"], true);
    EXPECT_EQ(caps["vgpu-display"]["blob"]["forced"], true);
    EXPECT_EQ(caps["vgpu-display"]["blob"]["release-timeout-ms"], 7);
    auto printed = BackendProcess::run_to_completion(
        { "--print-capabilities", "--blob", "--release-timeout", "7" });
    auto parsed = json::parse(printed.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << printed.out;
    EXPECT_EQ(parsed["features"], json::array()) << "libvirt reads this: no 3D";
    EXPECT_EQ(parsed["vgpu-display"], caps["vgpu-display"]);
}

// ---- every error of the blob commands
// -------------------------------------------------------------

TEST_F(Blob, CreateBlob_EachErrorCase)
{
    start();
    auto buffer = ScatteredBuffer::allocate(session->ram(), 64 * 1024, 2);
    const uint64_t size = buffer.size;
    EXPECT_ANSWER(gpu->create_blob(0, size, buffer.entries), INVALID_RESOURCE);
    EXPECT_ANSWER(gpu->create_blob(1, size, buffer.entries), OK);
    EXPECT_ANSWER(gpu->create_blob(1, size, buffer.entries), INVALID_RESOURCE);
    ASSERT_EQ(gpu->create_2d(2, 16, 16).type, OK);
    EXPECT_ANSWER(gpu->create_blob(2, size, buffer.entries), INVALID_RESOURCE);
    // No 3D renderer: host blobs are refused.
    EXPECT_ANSWER(
        gpu->create_blob(3, size, buffer.entries, virtio_gpu::BLOB_MEM_HOST3D), INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, virtio_gpu::BLOB_MEM_HOST3D_GUEST),
        INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, 0), INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, 99), INVALID_PARAMETER);
    // Entries: too many for the cap or for the buffer, empty, outside guest RAM.
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, virtio_gpu::BLOB_MEM_GUEST,
                      virtio_gpu::BLOB_FLAG_USE_SHAREABLE, 16385),
        UNSPEC);
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, virtio_gpu::BLOB_MEM_GUEST,
                      virtio_gpu::BLOB_FLAG_USE_SHAREABLE, uint32_t(buffer.entries.size() + 1)),
        UNSPEC);
    auto with = [&](MemEntry extra) {
        auto entries = buffer.entries;
        entries.push_back(extra);
        return entries;
    };
    EXPECT_ANSWER(gpu->create_blob(3, size, with(MemEntry { 1 << 20, 0, 0 })), UNSPEC);
    EXPECT_ANSWER(gpu->create_blob(3, size, with(MemEntry { uint64_t(1) << 44, 4096, 0 })), UNSPEC);
    EXPECT_ANSWER(
        gpu->create_blob(3, size, with(MemEntry { ~uint64_t(0) - 100, 4096, 0 })), UNSPEC);
    // Sizes: empty, more than the entries cover, beyond our 256 MiB limit.
    EXPECT_ANSWER(gpu->create_blob(3, 0, buffer.entries), INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->create_blob(3, size + 1, buffer.entries), INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->create_blob(3, uint64_t(1) << 40, buffer.entries), CtrlType::ErrOutOfMemory);
    // Flags are recorded, not checked (QEMU's built-in device answers the same).
    EXPECT_ANSWER(gpu->create_blob(3, size, buffer.entries, virtio_gpu::BLOB_MEM_GUEST,
                      virtio_gpu::BLOB_FLAG_USE_MAPPABLE | 0x80),
        OK);
    // Entries may overlap and be longer than the size: the first `size` bytes count.
    auto twice = buffer.entries;
    twice.insert(twice.end(), buffer.entries.begin(), buffer.entries.end());
    EXPECT_ANSWER(gpu->create_blob(4, size, twice), OK);
    // A body shorter than the struct.
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::ResourceCreateBlob), 55), UNSPEC);
    EXPECT_EQ(stats()["blob"]["created"], 3);
}

TEST_F(Blob, SetScanoutBlob_EachErrorCase)
{
    start();
    constexpr uint32_t w = 64, h = 48;
    make_blob(1, w, h, picture(w, h, 1), 3);
    gpu->create_with_backing(2, w, h, XRGB);
    const Rect full { 0, 0, w, h };
    auto set = [&](uint32_t scanout, uint32_t id, uint32_t width, uint32_t height, uint32_t format,
                   uint32_t stride, uint32_t offset, Rect r) {
        return gpu->set_scanout_blob(scanout, id, width, height, format, stride, offset, r);
    };
    EXPECT_ANSWER(set(16, 1, w, h, XRGB, w * 4, 0, full), CtrlType::ErrInvalidScanoutId);
    EXPECT_ANSWER(set(0, 9, w, h, XRGB, w * 4, 0, full), INVALID_RESOURCE);
    EXPECT_ANSWER(set(0, 2, w, h, XRGB, w * 4, 0, full), INVALID_PARAMETER); // a 2D resource
    for (uint32_t format : { 0u, 5u, 200u, 0xFFFFFFFFu })
        EXPECT_ANSWER(set(0, 1, w, h, format, w * 4, 0, full), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, 0, h, XRGB, w * 4, 0, Rect { 0, 0, 0, h }), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, w * 4, 0, Rect { 1, 0, w, h }), INVALID_PARAMETER);
    EXPECT_ANSWER(
        set(0, 1, w, h, XRGB, w * 4, 0, Rect { 0xFFFFFFF0, 0, 32, 16 }), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, w * 4, 0, Rect { 0, 0, 15, 16 }), INVALID_PARAMETER);
    // Rows narrower than the width, a stride or an offset that is not a multiple of 4.
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, w * 4 - 4, 0, full), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, w * 4 + 2, 0, full), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, h - 1, XRGB, w * 4, 2, Rect { 0, 0, w, h - 1 }), INVALID_PARAMETER);
    // Beyond the blob (4 pages hold 64 x 48 x 4 = 12288 bytes): one byte too far, a stride and
    // offset whose product wraps 32 bits.
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, w * 4, 4096, full), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, 4095, XRGB, 0x100000, 0, full), INVALID_PARAMETER);
    EXPECT_ANSWER(set(0, 1, w, h, XRGB, 0xFFFFFFFC, 0xFFFFFFFC, full), INVALID_PARAMETER);
    // The framebuffer may sit at an offset with a wider stride, as long as it fits.
    EXPECT_ANSWER(set(0, 1, 32, 16, XRGB, w * 4, 1024, Rect { 0, 0, 32, 16 }), OK);
    EXPECT_ANSWER(set(0, 1, w, h, ARGB, w * 4, 0, full), OK);
    // Resource 0 disables the scanout.
    EXPECT_ANSWER(set(0, 0, 0, 0, 0, 0, 0, Rect {}), OK);
    EXPECT_FALSE(control->call("query-outputs")[0]["enabled"].get<bool>());
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::SetScanoutBlob), 95), UNSPEC);
}

TEST_F(Blob, OtherCommandsOnABlob_AnswerAsDocumented)
{
    start();
    constexpr uint32_t w = 64, h = 48;
    auto pixels = picture(w, h, 4);
    auto buffer = make_blob(1, w, h, pixels, 4);
    const Rect full { 0, 0, w, h };
    // SET_SCANOUT cannot show a blob (no format or size of its own).
    EXPECT_ANSWER(gpu->set_scanout(0, 1, full), INVALID_PARAMETER);
    // It has backing: attaching more is ERR_UNSPEC as for a 2D resource.
    EXPECT_ANSWER(gpu->attach_backing(1, buffer.entries), UNSPEC);
    // A flush of a blob no scanout shows does nothing.
    EXPECT_ANSWER(gpu->flush(1, full), OK);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    // TRANSFER_TO_HOST_2D is answered without copying, whatever the rectangle.
    EXPECT_ANSWER(gpu->transfer(1, full), OK);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 1000, 1000, 5, 5 }), OK);
    EXPECT_ANSWER(gpu->flush(1, full), OK);
    EXPECT_ANSWER(gpu->flush(1, Rect { 0, 0, w + 1, h }), INVALID_PARAMETER);
    auto s = stats();
    EXPECT_EQ(s["transfers"], 0);
    EXPECT_EQ(s["bytes-copied"], 0);
    // Detach: the scanout goes dark; without backing a transfer or a new scanout is ERR_UNSPEC.
    EXPECT_ANSWER(gpu->detach_backing(1), OK);
    EXPECT_FALSE(control->call("query-outputs")[0]["enabled"].get<bool>());
    EXPECT_ANSWER(gpu->transfer(1, full), UNSPEC);
    EXPECT_ANSWER(show(0, 1, w, h), UNSPEC);
    EXPECT_ANSWER(gpu->detach_backing(1), UNSPEC);
    // Pages again: too few for the blob, then enough; it can be shown again.
    const MemEntry one_page { buffer.entries[0].addr, 4096, 0 };
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&one_page, 1)), INVALID_PARAMETER);
    EXPECT_ANSWER(gpu->attach_backing(1, buffer.entries), OK);
    EXPECT_ANSWER(show(0, 1, w, h), OK);
    EXPECT_ANSWER(gpu->flush(1, full), OK);
    EXPECT_TRUE(wait_for_frame(pixels, w, h));
    // Unref while shown: OK, and QEMU's display gets SCANOUT 0x0.
    size_t scanouts = session->display()->count(uint32_t(GpuRequest::Scanout));
    EXPECT_ANSWER(gpu->unref(1), OK);
    auto off = session->display()->wait_for_nth(uint32_t(GpuRequest::Scanout), scanouts);
    ASSERT_TRUE(off.has_value());
    display::qemu::GpuScanout scanout {};
    std::memcpy(&scanout, off->payload.data(), sizeof(scanout));
    EXPECT_EQ(scanout.width, 0u);
    EXPECT_ANSWER(gpu->unref(1), INVALID_RESOURCE);
    EXPECT_EQ(control->call("query-resources")["count"], 0);
}

// ---- the Linux sequence ----------------------------------------------------------------------

TEST_F(Blob, LinuxPageFlips_ScatteredBlobs_PixelExactInPlace_ACrcForEveryFrame_NothingCopied)
{
    start();
    constexpr uint32_t w = 320, h = 240;
    const Rect full { 0, 0, w, h };
    std::vector<std::byte> frames[2] = { picture(w, h, 10), picture(w, h, 11) };
    ScatteredBuffer buffers[2] = { make_blob(1, w, h, frames[0], 10),
        make_blob(2, w, h, frames[1], 11) };
    ASSERT_GT(buffers[0].entries.size(), 20u) << "the buffer should be scattered";
    EXPECT_EQ(control->call("crc-start", { { "output", 0 } }), json::object());

    std::vector<uint32_t> expected;
    uint64_t fence = 1;
    for (uint32_t i = 0; i < 8; ++i) {
        uint32_t back = i % 2;
        // The driver drew into the back buffer while it was not shown (before: its fence).
        frames[back] = picture(w, h, 20 + i);
        buffers[back].write(session->ram(), 0, frames[back]);
        ASSERT_EQ(show(0, back + 1, w, h).type, OK);
        ASSERT_EQ(gpu->transfer(back + 1, full).type, OK);
        auto answer = gpu->flush_fenced(back + 1, full, fence);
        ASSERT_EQ(answer.type, OK);
        EXPECT_EQ(answer.fence_id, fence);
        ++fence;
        expected.push_back(frame_crc(frames[back]));
        // A DIRTYFB on the buffer on screen: a small rectangle, its own fenced flush.
        if (i == 5) {
            const Rect damage { 40, 30, 100, 20 };
            auto fresh = picture(w, h, 99);
            for (uint32_t y = damage.y; y < damage.y + damage.height; ++y) {
                size_t at = (size_t(y) * w + damage.x) * 4;
                std::memcpy(frames[back].data() + at, fresh.data() + at, damage.width * 4);
                buffers[back].write(
                    session->ram(), at, std::span(frames[back]).subspan(at, damage.width * 4));
            }
            ASSERT_EQ(gpu->transfer(back + 1, damage).type, OK);
            ASSERT_EQ(gpu->flush_fenced(back + 1, damage, fence++).type, OK);
            expected.push_back(frame_crc(frames[back]));
        }
    }
    auto read = control->call("crc-read", { { "output", 0 } });
    ASSERT_EQ(read["entries"].size(), expected.size()) << read.dump();
    for (size_t i = 0; i < expected.size(); ++i)
        EXPECT_EQ(read["entries"][i]["crc"], expected[i]) << "frame " << i;
    // What QEMU got last is the last frame, read from the guest's pages.
    ASSERT_TRUE(session->display()->wait_quiet(std::chrono::milliseconds(100)));
    auto last = session->display()->messages();
    std::optional<DisplayMessage> final_update;
    for (const auto& m : last)
        if (m.request == uint32_t(GpuRequest::Update))
            final_update = m;
    ASSERT_TRUE(final_update.has_value());
    display::qemu::GpuUpdate u {};
    std::memcpy(&u, final_update->payload.data(), sizeof(u));
    // The last update is the DIRTYFB's rectangle or later frames' damage: compare what it covers.
    const auto& shown = frames[1];
    for (uint32_t y = 0; y < u.height; ++y)
        EXPECT_EQ(std::memcmp(final_update->payload.data() + sizeof(u) + size_t(y) * u.width * 4,
                      shown.data() + (size_t(u.y + y) * w + u.x) * 4, size_t(u.width) * 4),
            0)
            << "row " << y;
    auto s = stats();
    EXPECT_EQ(s["bytes-copied"], 0) << s.dump();
    EXPECT_EQ(s["blob"]["flushes"], expected.size());
    EXPECT_EQ(s["blob"]["views"]["mapped"], 2) << s.dump();
    EXPECT_EQ(s["blob"]["views"]["gathered"], 0);
    EXPECT_GT(s["display"]["qemu"]["update-bytes"].get<uint64_t>(), 0u);
}

// ---- the release fence ----------------------------------------------------------------------

// QEMU stops reading its display socket while the UPDATE of frame A is being written: the flip
// to B is answered at the timeout (not before), A's unsent rows are copied then, and the guest
// reusing A afterwards never reaches QEMU.
TEST_F(Blob, StuckSink_FenceCompletesAtTheTimeout_TheSinkGetsTheOldFrameNotTheReusedPages)
{
    start({ "--blob", "--release-timeout", "100" }, big_ram());
    constexpr uint32_t w = BIG_W, h = BIG_H;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 1), b = picture(w, h, 2);
    auto buffer_a = make_blob(1, w, h, a, 1);
    make_blob(2, w, h, b, 2);
    auto* peer = session->display();
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(50)));
    peer->set_reading_paused(true);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK) << "nothing was replaced: at once";
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // A's UPDATE fills the socket
    ASSERT_EQ(show(0, 2, w, h).type, OK);
    auto answer = gpu->flush_fenced(2, full, 2);
    ASSERT_EQ(answer.type, OK);
    EXPECT_EQ(answer.fence_id, 2u);
    // The guest reuses A now.
    buffer_a.write(session->ram(), 0, picture(w, h, 77));
    peer->set_reading_paused(false);
    EXPECT_TRUE(wait_for_frame(a, w, h)) << "QEMU did not get frame A as it was";
    EXPECT_TRUE(wait_for_frame(b, w, h));
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(100)));
    for (const auto& m : peer->messages())
        EXPECT_FALSE(same(update_pixels(m, w, h), picture(w, h, 77)))
            << "the reused pages reached QEMU";
    auto s = stats();
    EXPECT_EQ(s["blob"]["release-waits"], 1) << s.dump();
    EXPECT_EQ(s["blob"]["release-timeouts"], 1) << s.dump();
}

// A sink that is slow but reading: the fence waits for it (no timeout in sight), and comes as
// soon as it took the frame.
TEST_F(Blob, SlowSink_FenceWaitsUntilTheSinkTookTheReplacedFrame)
{
    start({ "--blob", "--release-timeout", "10000" }, big_ram());
    constexpr uint32_t w = BIG_W, h = BIG_H;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 3), b = picture(w, h, 4);
    make_blob(1, w, h, a, 3);
    make_blob(2, w, h, b, 4);
    auto* peer = session->display();
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(50)));
    peer->set_reading_paused(true);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(show(0, 2, w, h).type, OK);
    uint64_t response = gpu->submit_flush_fenced(2, full, 2);
    // While QEMU does not read, A is still being sent: the guest must not have it back.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(session->control().used_pending()) << "the fence came before the sink let go";
    peer->set_reading_paused(false);
    ASSERT_TRUE(session->control().wait_used().has_value());
    auto h2 = session->ram().get<CtrlHdr>(response);
    EXPECT_EQ(h2.type, OK);
    EXPECT_EQ(h2.fence_id, 2u);
    EXPECT_TRUE(wait_for_frame(a, w, h));
    auto s = stats();
    EXPECT_EQ(s["blob"]["release-waits"], 1) << s.dump();
    EXPECT_EQ(s["blob"]["release-timeouts"], 0) << s.dump();
}

// The guest frees a blob while QEMU still receives its UPDATE: the answer does not wait, and
// the rest of the UPDATE is the old pixels, not what the guest puts in the freed pages.
TEST_F(Blob, UnrefWhileASinkReads_AnsweredAtOnce_TheSinkGetsTheOldPixels)
{
    start({ "--blob" }, big_ram());
    constexpr uint32_t w = BIG_W, h = BIG_H;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 5);
    auto buffer = make_blob(1, w, h, a, 5);
    auto* peer = session->display();
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(50)));
    peer->set_reading_paused(true);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(gpu->unref(1).type, OK);
    buffer.write(session->ram(), 0, picture(w, h, 66));
    peer->set_reading_paused(false);
    EXPECT_TRUE(wait_for_frame(a, w, h));
    expect_serving();
}

// ---- memory-table changes and views ---------------------------------------------------------

TEST_F(Blob, MemoryTableChange_WhileShown_TheViewIsRebuiltAndShowsTheNewTable)
{
    start({ "--blob", "--no-configure-mem-slots" }); // SET_MEM_TABLE replaces the whole table
    constexpr uint32_t w = 320, h = 240;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 6);
    auto buffer = make_blob(1, w, h, a, 6);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    EXPECT_TRUE(wait_for_frame(a, w, h));
    size_t flips = control->call("query-outputs")[0]["flips"];
    // The same memory again (QEMU resends its table on memory hotplug and ROM changes).
    session->setup_memory();
    auto s = stats();
    EXPECT_EQ(s["blob"]["view-rebuilds"], 1) << s.dump();
    EXPECT_GT(control->call("query-outputs")[0]["flips"].get<size_t>(), flips);
    auto fresh = picture(w, h, 7);
    buffer.write(session->ram(), 0, fresh);
    ASSERT_EQ(gpu->flush_fenced(1, full, 2).type, OK);
    EXPECT_TRUE(wait_for_frame(fresh, w, h));
    EXPECT_EQ(control->call("crc-start", { { "output", 0 } }), json::object());
    ASSERT_EQ(gpu->flush_fenced(1, full, 3).type, OK);
    auto read = control->call("crc-read", { { "output", 0 } });
    ASSERT_EQ(read["entries"].size(), 1u);
    EXPECT_EQ(read["entries"][0]["crc"], frame_crc(fresh));
}

// The region holding a shown blob leaves the table (REM_MEM_REG, memory hot-unplug): its view
// cannot be built again, so the scanout goes dark (QEMU gets SCANOUT 0x0); when the region comes
// back, the guest can show the blob again.
TEST_F(Blob, RegionOfAShownBlobRemoved_TheScanoutGoesDark_BackWhenTheRegionReturns)
{
    start();
    if (!session->used_add_mem_reg())
        GTEST_FAIL() << "the backend offers CONFIGURE_MEM_SLOTS: the harness should use it";
    constexpr uint32_t w = 64, h = 64;
    const Rect full { 0, 0, w, h };
    auto& ram = session->ram();
    // Four pages in high memory, two runs.
    const uint64_t base = harness::GuestRam::high_base + (1 << 20);
    std::vector<MemEntry> entries { { base, 8192, 0 }, { base + 5 * 4096, 8192, 0 } };
    ScatteredBuffer buffer { entries, 16384 };
    auto a = picture(w, h, 60);
    buffer.write(ram, 0, a);
    ASSERT_EQ(gpu->create_blob(1, 16384, entries).type, OK);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    EXPECT_TRUE(wait_for_frame(a, w, h));
    size_t scanouts = session->display()->count(uint32_t(GpuRequest::Scanout));

    auto high = ram.regions().at(1);
    vhost::SingleMemoryRegion region { 0,
        { high.guest_phys_addr, high.memory_size, high.userspace_addr, high.mmap_offset } };
    auto& f = session->frontend();
    ASSERT_EQ(f.request_obj(vhost::Request::RemMemReg, region, {}, true), 0u);
    auto off = session->display()->wait_for_nth(uint32_t(GpuRequest::Scanout), scanouts);
    ASSERT_TRUE(off.has_value()) << "no SCANOUT after the region left";
    display::qemu::GpuScanout scanout {};
    std::memcpy(&scanout, off->payload.data(), sizeof(scanout));
    EXPECT_EQ(scanout.width, 0u);
    EXPECT_FALSE(control->call("query-outputs")[0]["enabled"].get<bool>());
    // Without its pages the blob cannot be shown; the backend serves on (rings are in low memory).
    EXPECT_ANSWER(show(0, 1, w, h), UNSPEC);

    int fd = ram.fd().get();
    ASSERT_EQ(f.request_obj(vhost::Request::AddMemReg, region, std::span(&fd, 1), true), 0u);
    EXPECT_ANSWER(show(0, 1, w, h), OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 2).type, OK);
    EXPECT_GE(stats()["blob"]["view-rebuilds"].get<uint64_t>(), 2u);
}

TEST_F(Blob, EntriesNotPageAligned_AreGatheredAtEachFlush)
{
    start();
    constexpr uint32_t w = 64, h = 64;
    const Rect full { 0, 0, w, h };
    auto& ram = session->ram();
    // Four pieces of 4 KiB starting 64 bytes into pages: no mapping can lay them side by side.
    std::vector<MemEntry> entries;
    for (int i = 0; i < 4; ++i)
        entries.push_back(MemEntry { ram.alloc(8192, 4096) + 64, 4096, 0 });
    ScatteredBuffer buffer { entries, 16384 };
    auto a = picture(w, h, 8);
    buffer.write(ram, 0, a);
    ASSERT_EQ(gpu->create_blob(1, 16384, entries).type, OK);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    EXPECT_TRUE(wait_for_frame(a, w, h));
    auto b = picture(w, h, 9);
    buffer.write(ram, 0, b);
    ASSERT_EQ(gpu->flush_fenced(1, full, 2).type, OK);
    EXPECT_TRUE(wait_for_frame(b, w, h));
    auto s = stats();
    EXPECT_EQ(s["blob"]["views"]["gathered"], 1) << s.dump();
    EXPECT_EQ(s["blob"]["bytes-gathered"], 2 * 16384) << s.dump();
    EXPECT_EQ(s["bytes-copied"], 2 * 16384) << "gathered bytes are copies the device made";
}

TEST_F(Blob, BlobCursor_TheImageReachesQemu)
{
    start();
    std::vector<std::byte> image(64 * 64 * 4);
    for (size_t i = 0; i < image.size(); ++i)
        image[i] = std::byte(uint8_t(i * 3 + 1));
    auto buffer = ScatteredBuffer::allocate(session->ram(), image.size(), 12);
    buffer.write(session->ram(), 0, image);
    ASSERT_EQ(gpu->create_blob(5, buffer.size, buffer.entries).type, OK);
    ASSERT_TRUE(gpu->update_cursor(0, 5, 10, 20, 3, 4).has_value());
    auto update = session->display()->wait_for(uint32_t(GpuRequest::CursorUpdate));
    ASSERT_TRUE(update.has_value());
    display::qemu::GpuCursorUpdate cursor {};
    ASSERT_EQ(update->payload.size(), sizeof(cursor));
    std::memcpy(&cursor, update->payload.data(), sizeof(cursor));
    EXPECT_EQ(cursor.pos.x, 10u);
    EXPECT_EQ(cursor.hot_x, 3u);
    EXPECT_EQ(std::memcmp(cursor.data, image.data(), image.size()), 0);
    // A blob smaller than a cursor is refused (counted as a cursor error).
    auto small = ScatteredBuffer::allocate(session->ram(), 4096, 13);
    ASSERT_EQ(gpu->create_blob(6, small.size, small.entries).type, OK);
    ASSERT_TRUE(gpu->update_cursor(0, 6, 10, 20, 3, 4).has_value());
    expect_serving();
    EXPECT_EQ(stats()["cursor-errors"], 1);
}

// ---- dmabufs: the message side, with a memfd standing in for udmabuf (none on these machines)
// ----

template <typename T>
T payload_as(const DisplayMessage& m)
{
    T value {};
    EXPECT_EQ(m.payload.size(), sizeof(T));
    std::memcpy(&value, m.payload.data(), std::min(m.payload.size(), sizeof(T)));
    return value;
}

constexpr uint32_t XR24 = 0x34325258; // DRM_FORMAT_XRGB8888

TEST_F(Blob, Dmabuf_TheBlobGoesAsDmabufScanout2WithItsFd_UpdatesWaitForQemusReply)
{
    start({ "--blob", "--dmabuf", "memfd-test", "--release-timeout", "10000" });
    constexpr uint32_t w = 320, h = 240;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 30), b = picture(w, h, 31);
    make_blob(1, w, h, a, 30);
    make_blob(2, w, h, b, 31);
    auto* peer = session->display();
    auto agreed = peer->wait_for(uint32_t(GpuRequest::SetProtocolFeatures));
    ASSERT_TRUE(agreed.has_value());
    EXPECT_EQ(payload_as<uint64_t>(*agreed), 0x3u) << "EDID and DMABUF2";
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);

    auto scanout = peer->wait_for(uint32_t(GpuRequest::DmabufScanout2));
    ASSERT_TRUE(scanout.has_value());
    auto m = payload_as<display::qemu::GpuDmabufScanout2>(*scanout);
    EXPECT_EQ(m.dmabuf_scanout.scanout_id, 0u);
    EXPECT_EQ(m.dmabuf_scanout.x, 0u);
    EXPECT_EQ(m.dmabuf_scanout.width, w);
    EXPECT_EQ(m.dmabuf_scanout.height, h);
    EXPECT_EQ(m.dmabuf_scanout.fd_width, w);
    EXPECT_EQ(m.dmabuf_scanout.fd_height, h);
    EXPECT_EQ(m.dmabuf_scanout.fd_stride, w * 4);
    EXPECT_EQ(m.dmabuf_scanout.fd_flags, 0u);
    EXPECT_EQ(uint32_t(m.dmabuf_scanout.fd_drm_fourcc), XR24);
    EXPECT_EQ(m.modifier, display::qemu::DRM_FORMAT_MOD_LINEAR);
    // The descriptor came with it: the blob's bytes (the stand-in's copy), not writable.
    ASSERT_TRUE(scanout->fd && scanout->fd->valid());
    struct stat st { };
    ASSERT_EQ(::fstat(scanout->fd->get(), &st), 0);
    EXPECT_EQ(uint64_t(st.st_size), uint64_t(w) * h * 4);
    std::vector<std::byte> got(a.size());
    ASSERT_EQ(::pread(scanout->fd->get(), got.data(), got.size(), 0), ssize_t(got.size()));
    EXPECT_TRUE(got == a);
    EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, scanout->fd->get(), 0),
        MAP_FAILED);

    auto update = peer->wait_for(uint32_t(GpuRequest::DmabufUpdate));
    ASSERT_TRUE(update.has_value());
    auto u = payload_as<display::qemu::GpuUpdate>(*update);
    EXPECT_EQ(u.width, w);
    EXPECT_EQ(u.height, h);
    EXPECT_EQ(peer->count(uint32_t(GpuRequest::Update)), 0u) << "no pixels through the socket";
    EXPECT_EQ(peer->count(uint32_t(GpuRequest::Scanout)), 0u);
    EXPECT_EQ(control->call("query-outputs")[0]["qemu-path"], "dmabuf");

    // QEMU's console has not drawn A's next update yet: the flip to B must wait for it.
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(50)));
    peer->set_holding_dmabuf_replies(true);
    ASSERT_EQ(gpu->flush_fenced(1, Rect { 0, 0, 64, 64 }, 2).type, OK) << "DIRTYFB: no wait";
    ASSERT_TRUE(peer->wait_for_nth(uint32_t(GpuRequest::DmabufUpdate), 1).has_value());
    ASSERT_EQ(show(0, 2, w, h).type, OK);
    uint64_t response = gpu->submit_flush_fenced(2, full, 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(session->control().used_pending()) << "the fence came before QEMU drew A";
    peer->set_holding_dmabuf_replies(false);
    ASSERT_TRUE(session->control().wait_used().has_value());
    EXPECT_EQ(session->ram().get<CtrlHdr>(response).fence_id, 3u);
    auto second = peer->wait_for_nth(uint32_t(GpuRequest::DmabufScanout2), 1);
    ASSERT_TRUE(second.has_value() && second->fd);
    std::vector<std::byte> got_b(b.size());
    ASSERT_EQ(::pread(second->fd->get(), got_b.data(), got_b.size(), 0), ssize_t(got_b.size()));
    EXPECT_TRUE(got_b == b) << "B's own dmabuf";
    auto s = stats();
    EXPECT_EQ(s["blob"]["dmabufs-exported"], 2) << s.dump();
    EXPECT_EQ(s["blob"]["release-waits"], 1) << s.dump();
    EXPECT_EQ(s["blob"]["release-timeouts"], 0) << s.dump();
    EXPECT_GE(s["display"]["qemu"]["dmabuf-replies"].get<uint64_t>(), 2u) << s.dump();
    EXPECT_EQ(s["bytes-copied"], 0);
    EXPECT_EQ(s["display"]["qemu"]["update-bytes"], 0);
}

TEST_F(Blob, Dmabuf_QemuNeverDraws_TheFenceCompletesAtTheTimeout)
{
    start({ "--blob", "--dmabuf", "memfd-test", "--release-timeout", "100" });
    constexpr uint32_t w = 64, h = 64;
    const Rect full { 0, 0, w, h };
    make_blob(1, w, h, picture(w, h, 40), 40);
    make_blob(2, w, h, picture(w, h, 41), 41);
    auto* peer = session->display();
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(50)));
    peer->set_holding_dmabuf_replies(true);
    ASSERT_EQ(show(0, 1, w, h).type, OK);
    ASSERT_EQ(gpu->flush_fenced(1, full, 1).type, OK);
    ASSERT_TRUE(peer->wait_for(uint32_t(GpuRequest::DmabufUpdate)).has_value());
    ASSERT_EQ(show(0, 2, w, h).type, OK);
    EXPECT_EQ(gpu->flush_fenced(2, full, 2).fence_id, 2u);
    auto s = stats();
    EXPECT_EQ(s["blob"]["release-timeouts"], 1) << s.dump();
    EXPECT_EQ(s["display"]["qemu"]["dmabuf-let-go"], 1) << s.dump();
    peer->set_holding_dmabuf_replies(false);
    expect_serving();
}

TEST_F(Blob, Dmabuf_WhereItCannotApply_TheOutputGoesAsUpdates)
{
    constexpr uint32_t w = 64, h = 64;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 50);
    {
        SCOPED_TRACE("--dmabuf off, QEMU offering DMABUF2");
        start({ "--blob" });
        make_blob(1, w, h, a, 50);
        ASSERT_EQ(show(0, 1, w, h).type, OK);
        ASSERT_EQ(gpu->flush(1, full).type, OK);
        EXPECT_TRUE(wait_for_frame(a, w, h));
        auto agreed = session->display()->wait_for(uint32_t(GpuRequest::SetProtocolFeatures));
        ASSERT_TRUE(agreed.has_value());
        EXPECT_EQ(payload_as<uint64_t>(*agreed), 0x1u) << "EDID only";
        EXPECT_EQ(session->display()->count(uint32_t(GpuRequest::DmabufScanout2)), 0u);
        EXPECT_EQ(control->call("query-outputs")[0]["qemu-path"], "update");
        EXPECT_TRUE(
            control->call("query-capabilities")["vgpu-display"]["blob"]["dmabuf"].is_null());
    }
    {
        SCOPED_TRACE("--dmabuf memfd-test, QEMU without DMABUF2");
        harness::SessionOptions options;
        options.display_protocol_features = 0x1;
        start({ "--blob", "--dmabuf", "memfd-test" }, options);
        make_blob(1, w, h, a, 50);
        ASSERT_EQ(show(0, 1, w, h).type, OK);
        ASSERT_EQ(gpu->flush(1, full).type, OK);
        EXPECT_TRUE(wait_for_frame(a, w, h));
        EXPECT_EQ(session->display()->count(uint32_t(GpuRequest::DmabufScanout2)), 0u);
        EXPECT_EQ(
            control->call("query-capabilities")["vgpu-display"]["blob"]["dmabuf"], "memfd-test");
    }
    {
        SCOPED_TRACE("--dmabuf memfd-test: a 2D resource, and a blob framebuffer at an offset");
        start({ "--blob", "--dmabuf", "memfd-test" });
        uint64_t gpa = gpu->create_with_backing(1, w, h, XRGB, a);
        (void)gpa;
        ASSERT_EQ(gpu->transfer(1, full).type, OK);
        ASSERT_EQ(gpu->set_scanout(0, 1, full).type, OK);
        ASSERT_EQ(gpu->flush(1, full).type, OK);
        EXPECT_TRUE(wait_for_frame(a, w, h));
        // 64 rows of 256 bytes after one page: the framebuffer starts 4096 bytes into the blob.
        auto buffer = ScatteredBuffer::allocate(session->ram(), 4096 + a.size(), 51);
        buffer.write(session->ram(), 4096, a);
        ASSERT_EQ(gpu->create_blob(2, buffer.size, buffer.entries).type, OK);
        ASSERT_EQ(gpu->set_scanout_blob(0, 2, w, h, XRGB, w * 4, 4096, full).type, OK);
        ASSERT_EQ(gpu->flush(2, full).type, OK);
        ASSERT_TRUE(session->display()->wait_quiet(std::chrono::milliseconds(100)));
        EXPECT_EQ(session->display()->count(uint32_t(GpuRequest::DmabufScanout2)), 0u);
        EXPECT_EQ(control->call("query-outputs")[0]["qemu-path"], "update");
        EXPECT_GE(session->display()->count(uint32_t(GpuRequest::Update)), 2u);
    }
}

} // namespace
} // namespace vgpu::integration
