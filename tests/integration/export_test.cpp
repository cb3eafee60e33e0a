// The export socket through the real backend process (docs/export.md): probe, leases, buffers
// by fd that are mapped (no pixels cross the socket), flip records and their eventfd, coalescing
// for a consumer that stops reading, hostile consumers, and the control socket's lease commands.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "export/client.h"
#include "harness/backend_process.h"
#include "harness/control_client.h"
#include "harness/frontend.h"
#include "harness/gpu_driver.h"
#include "virtio_gpu/formats.h"

namespace vgpu::integration {
namespace {

using namespace std::chrono_literals;
using harness::BackendProcess;
using harness::ControlClient;
using harness::GpuDriver;
using harness::QemuSession;
using json = nlohmann::json;
using virtio_gpu::CtrlType;
using virtio_gpu::Rect;
namespace ex = vgpu::exporting;

constexpr uint32_t OK = uint32_t(CtrlType::OkNodata);
constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t ARGB = uint32_t(virtio_gpu::Format::B8G8R8A8Unorm);

std::vector<std::byte> picture(uint32_t width, uint32_t height, uint32_t seed)
{
    std::vector<std::byte> out(size_t(width) * height * 4);
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = i % 4 == 3 ? std::byte(0)
                            : std::byte(uint8_t((i * 13 + (i >> 12) * 7 + seed * 31) & 0xff));
    return out;
}

class Export : public ::testing::Test {
protected:
    void start(std::vector<std::string> args = {}, bool display_socket = true)
    {
        dir = harness::make_temp_dir();
        export_path = dir + "/export.sock";
        control_path = dir + "/control.sock";
        args.insert(args.begin(), { "--export", export_path, "--control", control_path });
        backend = std::make_unique<BackendProcess>(BackendProcess::listen(args));
        harness::SessionOptions options;
        options.with_display_socket = display_socket;
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
    ex::Client consumer(const char* name = "test")
    {
        auto client = ex::Client::connect(export_path, name, 3000ms);
        EXPECT_TRUE(client.has_value()) << (client ? "" : client.error().message);
        return std::move(client.value());
    }
    // A 2D resource `id` of width x height shown on scanout 0 with `pixels`; returns its GPA.
    uint64_t show(
        uint32_t id, uint32_t width, uint32_t height, const std::vector<std::byte>& pixels)
    {
        uint64_t gpa = gpu->create_with_backing(id, width, height, XRGB, pixels);
        Rect all { 0, 0, width, height };
        EXPECT_EQ(gpu->transfer(id, all).type, OK);
        EXPECT_EQ(gpu->set_scanout(0, id, all).type, OK);
        EXPECT_EQ(gpu->flush(id, all).type, OK);
        return gpa;
    }
    // The next record of `type` (others before it are returned in `skipped`).
    ex::Message next_of(
        ex::Client& client, ex::Type type, std::vector<ex::Message>* skipped = nullptr)
    {
        for (;;) {
            auto m = client.next(3000ms);
            EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().message);
            if (!m || !*m) {
                ADD_FAILURE() << "no " << ex::type_name(uint16_t(type)) << " record";
                return {};
            }
            if ((*m)->type() == type)
                return std::move(**m);
            if (skipped)
                skipped->push_back(std::move(**m));
        }
    }
    json stats() { return control->call("query-stats")["export"]; }

    std::string dir, export_path, control_path;
    std::unique_ptr<BackendProcess> backend;
    std::unique_ptr<QemuSession> session;
    std::unique_ptr<GpuDriver> gpu;
    std::unique_ptr<ControlClient> control;
};

TEST_F(Export, Socket_Is0600_AndAProbeNeedsNoLease)
{
    // Without QEMU's display socket the outputs are our two (with it, QEMU's 16 scanouts).
    start({ "--output", "1024x768", "--output", "800x600" }, /*display_socket=*/false);
    struct stat st { };
    ASSERT_EQ(::stat(export_path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto pixels = picture(640, 480, 1);
    show(1, 640, 480, pixels);
    auto client = consumer();
    EXPECT_EQ(client.welcome().major, ex::VERSION_MAJOR);
    auto probe = client.probe();
    ASSERT_TRUE(probe.has_value()) << probe.error().message;
    EXPECT_EQ(probe->plane_types, uint32_t(ex::PLANE_REGION));
    EXPECT_TRUE(probe->flags & ex::PROBE_CRC);
    EXPECT_EQ(probe->release_timeout_ms, 20u);
    ASSERT_EQ(probe->outputs.size(), 2u);
    EXPECT_TRUE(probe->outputs[0].enabled);
    EXPECT_EQ(probe->outputs[0].width, 640u);
    EXPECT_EQ(probe->outputs[0].height, 480u);
    EXPECT_EQ(probe->outputs[0].fourcc, virtio_gpu::drm_fourcc(virtio_gpu::Format::B8G8R8X8Unorm));
    EXPECT_EQ(probe->outputs[0].generation, 1u);
    EXPECT_FALSE(probe->outputs[1].enabled);
    EXPECT_EQ(stats()["consumers"], 1);
    // Management learns the same without connecting.
    auto caps = control->call("query-capabilities")["vgpu-display"]["export"];
    EXPECT_EQ(caps["plane-types"], json::array({ "region" }));
    EXPECT_EQ(caps["protocol"], json::array({ 1, 0 }));
    auto printed = BackendProcess::run_to_completion({ "--print-capabilities" });
    auto parsed = json::parse(printed.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << printed.out;
    EXPECT_EQ(parsed["vgpu-display"]["export"], caps);
}

TEST_F(Export, SharedLease_MapsTheResourcesPixels_FlipsNameTheDamage_NoPixelsOnTheSocket)
{
    start();
    auto pixels = picture(640, 480, 2);
    uint64_t gpa = show(1, 640, 480, pixels);
    auto client = consumer("viewer");
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    EXPECT_EQ(lease->output, 0u);

    auto mode = next_of(client, ex::Type::Mode).as<ex::Mode>();
    ASSERT_TRUE(mode.has_value());
    EXPECT_EQ(mode->enabled, 1u);
    EXPECT_EQ(mode->width, 640u);
    auto buffer_message = next_of(client, ex::Type::Buffer);
    auto buffer = buffer_message.as<ex::Buffer>();
    ASSERT_TRUE(buffer.has_value());
    ASSERT_EQ(buffer_message.fds.size(), 1u);
    EXPECT_EQ(buffer->plane_type, uint32_t(ex::PLANE_REGION));
    EXPECT_EQ(buffer->fourcc, virtio_gpu::drm_fourcc(virtio_gpu::Format::B8G8R8X8Unorm));
    EXPECT_EQ(buffer->modifier, 0u);
    EXPECT_EQ((std::pair { buffer->width, buffer->height }), (std::pair { 640u, 480u }));
    EXPECT_EQ(buffer->stride, 640u * 4);
    auto mapped = ex::MappedBuffer::map(*buffer, buffer_message.fds[0]);
    ASSERT_TRUE(mapped.has_value()) << mapped.error().message;
    EXPECT_EQ(std::memcmp(mapped->data(), pixels.data(), pixels.size()), 0);
    // Read-only: a shared writable mapping is refused.
    EXPECT_EQ(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, buffer_message.fds[0].get(), 0),
        MAP_FAILED);

    auto first = next_of(client, ex::Type::Flip).as<ex::Flip>();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->buffer, buffer->buffer);
    EXPECT_EQ(first->covers, 1u);
    EXPECT_EQ(first->rects, 1u);
    EXPECT_EQ(first->damage[0].width, 640u) << "the first flip is the whole output";
    uint64_t count = 0;
    ASSERT_EQ(::read(lease->eventfd.get(), &count, sizeof(count)), ssize_t(sizeof(count)));
    EXPECT_GE(count, 1u);

    // A DIRTYFB of a band: its damage, and the new pixels are in the mapping already.
    auto changed = picture(640, 480, 3);
    session->ram().write(gpa, changed);
    Rect band { 0, 100, 640, 50 };
    ASSERT_EQ(gpu->transfer(1, band, uint64_t(band.y) * 640 * 4).type, OK);
    uint64_t before_flush = ex::monotonic_ns();
    ASSERT_EQ(gpu->flush(1, band).type, OK);
    pollfd p { lease->eventfd.get(), POLLIN, 0 };
    ASSERT_EQ(::poll(&p, 1, 3000), 1) << "the eventfd was not signalled";
    uint64_t woken = ex::monotonic_ns();
    auto flip = next_of(client, ex::Type::Flip).as<ex::Flip>();
    ASSERT_TRUE(flip.has_value());
    EXPECT_EQ(flip->generation, first->generation + 1);
    // Its timestamp is the backend's CLOCK_MONOTONIC at the signal: after the flush was sent,
    // before this consumer woke.
    EXPECT_GE(flip->time_ns, before_flush);
    EXPECT_LE(flip->time_ns, woken);
    EXPECT_EQ(flip->buffer, buffer->buffer) << "the same buffer: no BUFFER again";
    EXPECT_EQ((std::tuple { flip->damage[0].x, flip->damage[0].y, flip->damage[0].width,
                  flip->damage[0].height }),
        (std::tuple { 0u, 100u, 640u, 50u }));
    EXPECT_EQ(std::memcmp(mapped->row(100), changed.data() + 100 * 640 * 4, 50 * 640 * 4), 0);
    auto s = stats();
    EXPECT_EQ(s["buffers-sent"], 1);
    EXPECT_EQ(s["bytes-copied"], 0);
    EXPECT_GE(s["flips-sent"], 2);
}

TEST_F(Export, StalledConsumer_ItsFlipsCoalesce_CoversAddUpToEveryFlush_TheGuestNeverWaits)
{
    start();
    auto pixels = picture(640, 480, 4);
    uint64_t gpa = show(1, 640, 480, pixels);
    (void)gpa;
    auto client = consumer("stalled");
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    // The consumer reads nothing while the guest flushes 3000 times.
    constexpr int flushes = 3000;
    for (int i = 0; i < flushes; ++i)
        ASSERT_EQ(gpu->flush(1, Rect { uint32_t(i % 600), uint32_t(i % 400), 16, 16 }).type, OK);
    EXPECT_GT(stats()["flips-coalesced"], 0);
    uint64_t covered = 0, last = 0;
    uint32_t records = 0;
    for (;;) {
        auto m = client.next(300ms);
        ASSERT_TRUE(m.has_value()) << m.error().message;
        if (!*m)
            break;
        if (auto f = (*m)->as<ex::Flip>()) {
            EXPECT_GT(f->generation, last);
            last = f->generation;
            covered += f->covers;
            ++records;
        }
    }
    EXPECT_EQ(covered, uint64_t(flushes) + 1)
        << "the whole-output flip at the lease and every flush";
    EXPECT_LT(records, uint32_t(flushes)) << "nothing coalesced";
    EXPECT_EQ(last, uint64_t(flushes) + 1);
}

// A framebuffer too small to move into a memfd (and, the same way, a blob) goes out as copies:
// a ring of frame buffers per output gets each frame's changes, only while it is leased.
TEST_F(Export, SmallFramebuffer_IsCopiedIntoTheOutputsRing_EverySlotWhole_DamageSinceThePrevious)
{
    start();
    auto pixels = picture(64, 64, 6);
    uint64_t gpa = show(1, 64, 64, pixels);
    EXPECT_EQ(stats()["bytes-copied"], 0) << "nothing copied before a lease";
    auto client = consumer();
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    std::map<uint32_t, ex::MappedBuffer> buffers;
    std::vector<std::byte> expected = pixels;
    auto check_flip = [&](const char* when, ex::Rect32 damage) {
        SCOPED_TRACE(when);
        std::vector<ex::Message> before;
        auto flip = next_of(client, ex::Type::Flip, &before).as<ex::Flip>();
        ASSERT_TRUE(flip.has_value());
        for (auto& m : before)
            if (auto b = m.as<ex::Buffer>()) {
                EXPECT_EQ((std::tuple { b->width, b->height, b->stride }),
                    (std::tuple { 64u, 64u, 256u }));
                auto mapped = ex::MappedBuffer::map(*b, m.fds[0]);
                ASSERT_TRUE(mapped.has_value()) << mapped.error().message;
                buffers.emplace(b->buffer, std::move(mapped.value()));
            }
        ASSERT_TRUE(buffers.count(flip->buffer)) << "a FLIP names a buffer it was sent";
        EXPECT_EQ(std::memcmp(buffers.at(flip->buffer).data(), expected.data(), expected.size()), 0)
            << "buffer " << flip->buffer << " does not hold the whole frame";
        // The damage is since the previous FLIP, though each names another ring slot.
        ASSERT_EQ(flip->rects, 1u);
        EXPECT_EQ((std::tuple { flip->damage[0].x, flip->damage[0].y, flip->damage[0].width,
                      flip->damage[0].height }),
            (std::tuple { damage.x, damage.y, damage.width, damage.height }));
    };
    check_flip("the lease", { 0, 0, 64, 64 });
    for (uint32_t i = 0; i < 5; ++i) {
        auto band = picture(64, 8, 10 + i);
        uint32_t y = 8 * i;
        std::memcpy(expected.data() + size_t(y) * 256, band.data(), band.size());
        session->ram().write(gpa + uint64_t(y) * 256, band);
        ASSERT_EQ(gpu->transfer(1, Rect { 0, y, 64, 8 }, uint64_t(y) * 256).type, OK);
        ASSERT_EQ(gpu->flush(1, Rect { 0, y, 64, 8 }).type, OK);
        check_flip("a band", { 0, y, 64, 8 });
    }
    EXPECT_EQ(buffers.size(), 3u) << "a ring of three, each sent once";
    auto s = stats();
    EXPECT_GT(s["bytes-copied"], 0);
    EXPECT_EQ(s["buffers-sent"], 3);
}

// A blob is guest memory: never handed out by default. Its frames go out as copies, and a FLIP
// after the guest wrote into the blob names a buffer holding exactly those pixels.
TEST_F(Export, BlobFramebuffer_GoesOutAsCopies_NeverAsGuestMemory)
{
    start({ "--blob" });
    constexpr uint32_t w = 320, h = 240;
    auto pixels = picture(w, h, 7);
    auto blob = harness::ScatteredBuffer::allocate(session->ram(), uint64_t(w) * h * 4, 3);
    blob.write(session->ram(), 0, pixels);
    ASSERT_EQ(gpu->create_blob(1, blob.size, blob.entries).type, OK);
    ASSERT_EQ(gpu->set_scanout_blob(0, 1, w, h, XRGB, w * 4, 0, Rect { 0, 0, w, h }).type, OK);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, w, h }).type, OK);
    auto client = consumer();
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    std::map<uint32_t, ex::MappedBuffer> buffers;
    auto latest = [&] {
        std::vector<ex::Message> before;
        auto flip = next_of(client, ex::Type::Flip, &before).as<ex::Flip>();
        for (auto& m : before)
            if (auto b = m.as<ex::Buffer>()) {
                EXPECT_EQ(b->plane_type, uint32_t(ex::PLANE_REGION));
                EXPECT_EQ(b->size, uint64_t(w) * h * 4) << "a frame, not guest memory";
                auto mapped = ex::MappedBuffer::map(*b, m.fds[0]);
                EXPECT_TRUE(mapped.has_value());
                if (mapped)
                    buffers.emplace(b->buffer, std::move(mapped.value()));
            }
        return flip && buffers.count(flip->buffer) ? buffers.at(flip->buffer).data() : nullptr;
    };
    const std::byte* shown = latest();
    ASSERT_NE(shown, nullptr);
    EXPECT_EQ(std::memcmp(shown, pixels.data(), pixels.size()), 0);
    auto next = picture(w, h, 8);
    blob.write(session->ram(), 0, next);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, w, h }).type, OK);
    shown = latest();
    ASSERT_NE(shown, nullptr);
    EXPECT_EQ(std::memcmp(shown, next.data(), next.size()), 0);
    EXPECT_GE(stats()["bytes-copied"], 2 * w * h * 4);
}

// With CRC capture on, each generation's CRC follows its FLIP in a record of its own, the same
// value the control socket's capture has.
TEST_F(Export, CrcCaptureOn_EachFlipsCrcFollowsInItsOwnRecord)
{
    start();
    auto pixels = picture(640, 480, 9);
    uint64_t gpa = show(1, 640, 480, pixels);
    auto client = consumer();
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    next_of(client, ex::Type::Flip);
    EXPECT_EQ(control->call("crc-start", { { "output", 0 } }), json::object());
    for (uint32_t i = 0; i < 3; ++i) {
        auto next = picture(640, 480, 20 + i);
        session->ram().write(gpa, next);
        ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, 640, 480 }).type, OK);
        ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 640, 480 }).type, OK);
    }
    auto entries = control->call("crc-stop", { { "output", 0 } })["entries"];
    ASSERT_EQ(entries.size(), 3u) << entries.dump();
    std::vector<std::pair<uint64_t, uint32_t>> flips, crcs;
    while (crcs.size() < 3) {
        auto m = client.next(3000ms);
        ASSERT_TRUE(m.has_value() && m->has_value()) << "records missing";
        if (auto f = (*m)->as<ex::Flip>())
            flips.emplace_back(f->generation, 0);
        if (auto c = (*m)->as<ex::Crc>()) {
            ASSERT_FALSE(flips.empty()) << "a CRC before its FLIP";
            EXPECT_LE(c->generation, flips.back().first);
            crcs.emplace_back(c->generation, c->crc);
        }
    }
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(crcs[i].first, entries[i]["frame"].get<uint64_t>());
        EXPECT_EQ(crcs[i].second, entries[i]["crc"].get<uint32_t>());
    }
}

TEST_F(Export, HostileConsumers_GetAPreciseError_OthersAreServed)
{
    start();
    auto good = consumer("good");
    auto lease = good.lease(0, ex::LeaseKind::Exclusive);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;

    auto error_of = [&](ex::Client& c) {
        auto m = next_of(c, ex::Type::Error).as<ex::ErrorReply>();
        return m ? std::pair { ex::ErrorCode(m->code), ex::get_text(m->text) }
                 : std::pair { ex::ErrorCode(0), std::string() };
    };
    // Requests the backend refuses and keeps the connection for.
    auto other = consumer("other");
    auto busy = other.lease(0, ex::LeaseKind::Exclusive);
    ASSERT_FALSE(busy.has_value());
    EXPECT_NE(busy.error().message.find("exclusive lease"), std::string::npos);
    auto nowhere = other.lease(16, ex::LeaseKind::Shared); // QEMU's display: scanouts 0..15
    ASSERT_FALSE(nowhere.has_value());
    EXPECT_NE(nowhere.error().message.find("output 16"), std::string::npos);
    auto dmabuf = other.lease(0, ex::LeaseKind::Shared, ex::PLANE_DMABUF);
    ASSERT_FALSE(dmabuf.has_value());
    EXPECT_NE(dmabuf.error().message.find("not available"), std::string::npos);
    ex::Header unknown { ex::MAGIC, 200, 0, sizeof(ex::Header), 9 };
    ASSERT_TRUE(other.send_raw(std::as_bytes(std::span(&unknown, 1))).has_value());
    EXPECT_EQ(error_of(other).first, ex::ErrorCode::UnknownType);
    ASSERT_TRUE(other.send_raw(ex::encode(ex::Release { 99, 0 }, 10)).has_value());
    EXPECT_EQ(error_of(other).first, ex::ErrorCode::NoSuchLease);
    ASSERT_TRUE(other.send_raw(ex::encode(ex::Welcome { 1, 0, 0, 0 }, 11)).has_value());
    EXPECT_EQ(error_of(other).first, ex::ErrorCode::BadMessage);
    EXPECT_TRUE(other.probe().has_value()) << "still connected";

    // Garbage: an ERROR, then the connection is closed.
    auto garbage = consumer("garbage");
    std::vector<std::byte> junk(40, std::byte(0x5a));
    ASSERT_TRUE(garbage.send_raw(junk).has_value());
    auto [code, text] = error_of(garbage);
    EXPECT_EQ(code, ex::ErrorCode::BadMessage);
    EXPECT_NE(text.find("magic"), std::string::npos) << text;
    auto after = garbage.next(2000ms);
    EXPECT_FALSE(after.has_value())
        << "not disconnected: "
        << (after && *after ? ex::type_name((*after)->header.type) : "nothing");

    // A request before HELLO, and another major version.
    auto raw = [&] {
        Fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        sockaddr_un a {};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, export_path.data(), export_path.size());
        EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        return s;
    };
    auto read_error = [](const Fd& s) {
        pollfd p { s.get(), POLLIN, 0 };
        EXPECT_EQ(::poll(&p, 1, 3000), 1);
        auto packet = ex::receive_packet(s.get());
        EXPECT_TRUE(packet.has_value() && packet->state == ex::Received::State::Packet);
        if (!packet || packet->state != ex::Received::State::Packet)
            return ex::ErrorCode(0);
        auto m = ex::parse(packet->bytes, std::move(packet->fds));
        return m && m->as<ex::ErrorReply>() ? ex::ErrorCode(m->as<ex::ErrorReply>()->code)
                                            : ex::ErrorCode(0);
    };
    Fd early = raw();
    auto probe = ex::encode(ex::Probe {}, 1);
    ASSERT_TRUE(ex::send_packet(early.get(), probe, {}).value());
    EXPECT_EQ(read_error(early), ex::ErrorCode::Order);
    Fd future = raw();
    auto hello = ex::encode(ex::Hello { 2, 0, {} }, 1);
    ASSERT_TRUE(ex::send_packet(future.get(), hello, {}).value());
    EXPECT_EQ(read_error(future), ex::ErrorCode::Version);

    // The good consumer still gets its flips.
    auto pixels = picture(640, 480, 5);
    show(1, 640, 480, pixels);
    auto flip = next_of(good, ex::Type::Flip).as<ex::Flip>();
    ASSERT_TRUE(flip.has_value());
    EXPECT_GE(stats()["bad-messages"], 1);
}

TEST_F(Export, ControlSocket_ListsAndRevokesLeases_ADisconnectEndsThem)
{
    start();
    auto a = consumer("viewer-a");
    auto b = consumer("viewer-b");
    auto la = a.lease(0, ex::LeaseKind::Exclusive);
    auto lb = b.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(la.has_value() && lb.has_value());
    auto list = control->call("lease-list");
    ASSERT_EQ(list.size(), 2u) << list.dump();
    EXPECT_EQ(list[0]["lease"], la->lease);
    EXPECT_EQ(list[0]["kind"], "exclusive");
    EXPECT_EQ(list[0]["consumer"], "viewer-a");
    EXPECT_EQ(list[0]["pid"], int(::getpid()));
    EXPECT_EQ(list[1]["kind"], "shared");
    EXPECT_EQ(list[1]["plane-type"], "region");

    EXPECT_EQ(control->call("lease-revoke", { { "lease", la->lease } }), json::object());
    auto revoked = next_of(a, ex::Type::Revoked).as<ex::Revoked>();
    ASSERT_TRUE(revoked.has_value());
    EXPECT_EQ(revoked->lease, la->lease);
    EXPECT_EQ(revoked->reason, uint32_t(ex::RevokeReason::Control));
    auto again = control->execute("lease-revoke", { { "lease", la->lease } });
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ((*again)["error"]["class"], "InvalidParameter") << again->dump();
    // The exclusive slot is free again.
    auto retaken = a.lease(0, ex::LeaseKind::Exclusive);
    EXPECT_TRUE(retaken.has_value()) << retaken.error().message;

    {
        auto gone = std::move(b);
    }
    for (int i = 0; i < 100 && control->call("lease-list").size() != 1; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(control->call("lease-list").size(), 1u);
}

TEST_F(Export, Cursor_ItsImageIsABufferOfItsOwn_MovesCoalesce_ANewImageRetiresTheOld)
{
    start();
    show(1, 640, 480, picture(640, 480, 4));
    auto arrow = picture(64, 64, 5);
    auto hand = picture(64, 64, 6);
    gpu->create_with_backing(6, 64, 64, ARGB, arrow);
    ASSERT_EQ(gpu->transfer(6, Rect { 0, 0, 64, 64 }).type, OK);
    gpu->create_with_backing(7, 64, 64, ARGB, hand);
    ASSERT_EQ(gpu->transfer(7, Rect { 0, 0, 64, 64 }).type, OK);
    ASSERT_TRUE(gpu->update_cursor(0, 6, 100, 200, 3, 4).has_value());

    // A lease taken while a cursor is shown gets it after its first FLIP.
    auto client = consumer("cursor");
    auto probe = client.probe();
    ASSERT_TRUE(probe.has_value());
    EXPECT_TRUE(probe->flags & ex::PROBE_CURSOR);
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    std::vector<ex::Message> before;
    auto cursor_message = next_of(client, ex::Type::Cursor, &before);
    ASSERT_EQ(before.size(), 4u); // MODE, BUFFER (frame), FLIP, BUFFER (cursor)
    EXPECT_EQ(before[2].type(), ex::Type::Flip);
    auto image = before[3].as<ex::Buffer>();
    ASSERT_TRUE(image.has_value());
    ASSERT_EQ(before[3].fds.size(), 1u);
    EXPECT_EQ(image->fourcc, virtio_gpu::drm_fourcc(virtio_gpu::Format::B8G8R8A8Unorm));
    EXPECT_EQ((std::tuple { image->width, image->height, image->stride }),
        (std::tuple { 64u, 64u, 256u }));
    auto mapped = ex::MappedBuffer::map(*image, before[3].fds[0]);
    ASSERT_TRUE(mapped.has_value()) << mapped.error().message;
    EXPECT_EQ(std::memcmp(mapped->data(), arrow.data(), arrow.size()), 0);
    EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, before[3].fds[0].get(), 0),
        MAP_FAILED);
    auto cursor = cursor_message.as<ex::Cursor>();
    ASSERT_TRUE(cursor.has_value());
    EXPECT_EQ(cursor->buffer, image->buffer);
    EXPECT_EQ(
        (std::tuple { cursor->x, cursor->y, cursor->hot_x, cursor->hot_y, cursor->moved_only }),
        (std::tuple { 100u, 200u, 3u, 4u, 0u }));

    // Moves name the same buffer; the last position is what the consumer ends up with.
    for (uint32_t i = 1; i <= 50; ++i)
        ASSERT_TRUE(gpu->move_cursor(0, 100 + i, 200 + i).has_value());
    uint32_t moves = 0;
    ex::Cursor last {};
    while (last.x != 150) {
        auto m = next_of(client, ex::Type::Cursor).as<ex::Cursor>();
        ASSERT_TRUE(m.has_value());
        EXPECT_EQ(m->buffer, image->buffer);
        EXPECT_EQ(m->moved_only, 1u);
        EXPECT_GT(m->x, last.x);
        last = *m;
        ++moves;
    }
    EXPECT_EQ(last.y, 250u);
    // Every move was either read or replaced by a later one.
    EXPECT_EQ(moves + uint32_t(stats()["cursor-moves-coalesced"]), 50u);

    // A new image: its BUFFER, the CURSOR naming it, then the old buffer's BUFFER_GONE.
    ASSERT_TRUE(gpu->update_cursor(0, 7, 10, 20, 30, 31).has_value());
    auto next_image_message = next_of(client, ex::Type::Buffer);
    auto next_image = next_image_message.as<ex::Buffer>();
    ASSERT_TRUE(next_image.has_value());
    EXPECT_NE(next_image->buffer, image->buffer);
    auto hand_map = ex::MappedBuffer::map(*next_image, next_image_message.fds[0]);
    ASSERT_TRUE(hand_map.has_value());
    EXPECT_EQ(std::memcmp(hand_map->data(), hand.data(), hand.size()), 0);
    auto shown = client.next(3000ms);
    ASSERT_TRUE(shown.has_value() && *shown);
    auto hand_cursor = (*shown)->as<ex::Cursor>();
    ASSERT_TRUE(hand_cursor.has_value()) << ex::type_name((*shown)->header.type);
    EXPECT_EQ(hand_cursor->buffer, next_image->buffer);
    EXPECT_EQ((std::tuple { hand_cursor->hot_x, hand_cursor->hot_y }), (std::tuple { 30u, 31u }));
    auto gone = next_of(client, ex::Type::BufferGone).as<ex::BufferGone>();
    ASSERT_TRUE(gone.has_value());
    EXPECT_EQ(gone->buffer, image->buffer);
    // The arrow stays readable in the consumer's mapping after its BUFFER_GONE.
    EXPECT_EQ(std::memcmp(mapped->data(), arrow.data(), arrow.size()), 0);

    // Hidden: CURSOR {buffer 0}, then the hand's BUFFER_GONE.
    ASSERT_TRUE(gpu->update_cursor(0, 0, 0, 0, 0, 0).has_value());
    auto hidden = next_of(client, ex::Type::Cursor).as<ex::Cursor>();
    ASSERT_TRUE(hidden.has_value());
    EXPECT_EQ(hidden->buffer, 0u);
    auto hand_gone = next_of(client, ex::Type::BufferGone).as<ex::BufferGone>();
    ASSERT_TRUE(hand_gone.has_value());
    EXPECT_EQ(hand_gone->buffer, next_image->buffer);
    // A hidden cursor's moves say nothing; a lease taken now gets no CURSOR.
    ASSERT_TRUE(gpu->move_cursor(0, 1, 1).has_value());
    auto second = consumer("second");
    ASSERT_TRUE(second.lease(0, ex::LeaseKind::Shared).has_value());
    std::vector<ex::Message> records;
    for (;;) {
        auto m = second.next(300ms);
        ASSERT_TRUE(m.has_value());
        if (!*m)
            break;
        records.push_back(std::move(**m));
    }
    ASSERT_EQ(records.size(), 3u);
    EXPECT_EQ(records[2].type(), ex::Type::Flip);
    auto quiet = client.next(100ms);
    ASSERT_TRUE(quiet.has_value());
    EXPECT_FALSE(quiet->has_value()) << ex::type_name((**quiet).header.type);
}

// The records up to and including the first of `type`, as "TYPE" names (what a lease was told).
std::vector<std::string> names_until(ex::Client& client, ex::Type type)
{
    std::vector<std::string> names;
    for (int i = 0; i < 32; ++i) {
        auto m = client.next(3000ms);
        if (!m || !*m) {
            names.emplace_back("(nothing)");
            return names;
        }
        names.emplace_back(ex::type_name((*m)->header.type));
        if ((*m)->type() == type)
            return names;
    }
    return names;
}

TEST_F(Export, ResourceUnref_ItsBufferIsGoneBeforeTheNextFlip_TheMappingStaysReadable)
{
    start();
    auto first = picture(640, 480, 7);
    show(1, 640, 480, first);
    auto client = consumer();
    ASSERT_TRUE(client.lease(0, ex::LeaseKind::Shared).has_value());
    auto buffer_message = next_of(client, ex::Type::Buffer);
    auto one = buffer_message.as<ex::Buffer>();
    ASSERT_TRUE(one.has_value());
    auto mapped = ex::MappedBuffer::map(*one, buffer_message.fds[0]);
    ASSERT_TRUE(mapped.has_value());
    next_of(client, ex::Type::Flip);

    // A flip to resource 2, then resource 1 is unreferenced while the consumer holds its buffer.
    auto second = picture(640, 480, 8);
    uint64_t gpa = show(2, 640, 480, second);
    auto two = next_of(client, ex::Type::Buffer).as<ex::Buffer>();
    ASSERT_TRUE(two.has_value());
    EXPECT_NE(two->buffer, one->buffer);
    EXPECT_EQ(next_of(client, ex::Type::Flip).as<ex::Flip>()->buffer, two->buffer);
    ASSERT_EQ(gpu->unref(1).type, OK);
    session->ram().write(gpa, picture(640, 480, 9));
    Rect band { 0, 0, 640, 10 };
    ASSERT_EQ(gpu->transfer(2, band).type, OK);
    ASSERT_EQ(gpu->flush(2, band).type, OK);
    auto gone = client.next(3000ms);
    ASSERT_TRUE(gone.has_value() && *gone);
    auto gone_record = (*gone)->as<ex::BufferGone>();
    ASSERT_TRUE(gone_record.has_value()) << ex::type_name((*gone)->header.type);
    EXPECT_EQ(gone_record->buffer, one->buffer);
    auto flip = next_of(client, ex::Type::Flip).as<ex::Flip>();
    EXPECT_EQ(flip->buffer, two->buffer);
    // The consumer's mapping of the freed resource still reads its last pixels, never freed memory.
    EXPECT_EQ(std::memcmp(mapped->data(), first.data(), first.size()), 0);
}

TEST_F(Export, DeviceResetAndNewFrontend_TheLeaseSeesTheOutputGoAndComeBack)
{
    start();
    show(1, 640, 480, picture(640, 480, 10));
    auto client = consumer();
    auto lease = client.lease(0, ex::LeaseKind::Shared);
    ASSERT_TRUE(lease.has_value());
    EXPECT_EQ(names_until(client, ex::Type::Flip),
        (std::vector<std::string> { "MODE", "BUFFER", "FLIP" }));

    // A device reset disables the output: MODE {enabled 0}; the lease stays.
    session->reset_and_reinit(vhost::Request::ResetDevice);
    auto off = next_of(client, ex::Type::Mode).as<ex::Mode>();
    ASSERT_TRUE(off.has_value());
    EXPECT_EQ(off->enabled, 0u);
    // The driver starts over with the same resource id: the old buffer is gone first, then the
    // new mode, its buffer and the whole output.
    gpu = std::make_unique<GpuDriver>(*session);
    show(1, 800, 600, picture(800, 600, 11));
    std::vector<ex::Message> after_reset;
    auto second = next_of(client, ex::Type::Flip, &after_reset).as<ex::Flip>();
    ASSERT_TRUE(second.has_value());
    ASSERT_EQ(after_reset.size(), 3u);
    EXPECT_EQ(after_reset[0].as<ex::BufferGone>()->buffer, 1u);
    auto on = after_reset[1].as<ex::Mode>();
    EXPECT_EQ((std::tuple { on->enabled, on->width, on->height }), (std::tuple { 1u, 800u, 600u }));
    EXPECT_EQ(after_reset[2].as<ex::Buffer>()->buffer, second->buffer);

    // The frontend goes away (QEMU quits or crashes) and another one comes.
    gpu.reset();
    session.reset();
    auto gone = next_of(client, ex::Type::Mode).as<ex::Mode>();
    ASSERT_TRUE(gone.has_value());
    EXPECT_EQ(gone->enabled, 0u);
    session = std::make_unique<QemuSession>(backend->socket_path(), harness::SessionOptions {});
    session->start();
    gpu = std::make_unique<GpuDriver>(*session);
    auto pixels = picture(640, 480, 12);
    show(1, 640, 480, pixels);
    std::vector<ex::Message> after_reconnect;
    auto third = next_of(client, ex::Type::Flip, &after_reconnect).as<ex::Flip>();
    ASSERT_TRUE(third.has_value());
    // The old frontend's resources are gone, and the new one comes with its fd.
    ASSERT_EQ(after_reconnect.size(), 3u);
    EXPECT_EQ(after_reconnect[0].as<ex::BufferGone>()->buffer, second->buffer);
    auto back = after_reconnect[1].as<ex::Mode>();
    EXPECT_EQ((std::tuple { back->enabled, back->width }), (std::tuple { 1u, 640u }));
    auto buffer = after_reconnect[2].as<ex::Buffer>();
    ASSERT_TRUE(buffer.has_value());
    EXPECT_EQ(third->buffer, buffer->buffer);
    auto mapped = ex::MappedBuffer::map(*buffer, after_reconnect[2].fds[0]);
    ASSERT_TRUE(mapped.has_value());
    EXPECT_EQ(std::memcmp(mapped->data(), pixels.data(), pixels.size()), 0);
    EXPECT_EQ(control->call("lease-list").size(), 1u);
}

// An exclusive lease on a 2D framebuffer: the consumer maps the resource's own pixels, so the
// guest's next transfer into them waits for its ACK (up to the release timeout).
TEST_F(Export, Exclusive2D_ATransferIntoAHeldFrameWaitsForTheAck_UpToTheReleaseTimeout)
{
    // A long release timeout, so that only the ACK ends the wait below.
    start({ "--release-timeout", "10000" });
    auto before = picture(640, 480, 20);
    uint64_t gpa = show(1, 640, 480, before);
    auto client = consumer("exclusive");
    auto lease = client.lease(0, ex::LeaseKind::Exclusive);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    auto buffer_message = next_of(client, ex::Type::Buffer);
    auto mapped = ex::MappedBuffer::map(*buffer_message.as<ex::Buffer>(), buffer_message.fds[0]);
    ASSERT_TRUE(mapped.has_value());
    auto first = next_of(client, ex::Type::Flip).as<ex::Flip>();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(stats()["holds"], 1);

    // The guest draws into the held framebuffer: its transfer waits, and the consumer still
    // reads the frame it was shown.
    auto after = picture(640, 480, 21);
    session->ram().write(gpa, after);
    std::atomic<uint32_t> transfer_type { 0 };
    std::thread guest([&] { transfer_type = gpu->transfer(1, Rect { 0, 0, 640, 480 }).type; });
    json device;
    for (int i = 0; i < 500 && (device = control->call("query-stats"))["transfer-waits"] != 1; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(device["transfer-waits"], 1) << device.dump();
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(transfer_type.load(), 0u) << "the transfer was answered before the ACK";
    EXPECT_EQ(std::memcmp(mapped->data(), before.data(), before.size()), 0)
        << "the held frame changed under its consumer";
    ASSERT_TRUE(client.ack(lease->lease, first->generation).has_value());
    guest.join();
    EXPECT_EQ(transfer_type.load(), OK);
    EXPECT_EQ(std::memcmp(mapped->data(), after.data(), after.size()), 0);
    device = control->call("query-stats");
    EXPECT_EQ(device["transfer-wait-timeouts"], 0);
    EXPECT_EQ(stats()["ack-timeouts"], 0);

    // Acknowledged before the guest draws: no wait at all.
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 640, 480 }).type, OK);
    auto second = next_of(client, ex::Type::Flip).as<ex::Flip>();
    ASSERT_TRUE(client.ack(lease->lease, second->generation).has_value());
    for (int i = 0;
         i < 100 && control->call("lease-list")[0]["generation-acked"] != second->generation; ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, 640, 480 }).type, OK);
    EXPECT_EQ(control->call("query-stats")["transfer-waits"], 1);
    // A shared lease never holds anything.
    auto viewer = consumer("shared");
    ASSERT_TRUE(viewer.lease(0, ex::LeaseKind::Shared).has_value());
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 640, 480 }).type, OK);
    ASSERT_TRUE(client.release(lease->lease).has_value());
    for (int i = 0; i < 100 && control->call("lease-list").size() != 1; ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, 640, 480 }).type, OK);
    EXPECT_EQ(control->call("query-stats")["transfer-waits"], 1);
}

TEST_F(Export, Exclusive2D_AConsumerThatNeverAcks_HoldsTheGuestOnlyUpToTheTimeout_ThenIsRevoked)
{
    start(); // --release-timeout 20 ms
    show(1, 640, 480, picture(640, 480, 22));
    auto client = consumer("silent");
    auto lease = client.lease(0, ex::LeaseKind::Exclusive);
    ASSERT_TRUE(lease.has_value());
    auto viewer = consumer("shared");
    ASSERT_TRUE(viewer.lease(0, ex::LeaseKind::Shared).has_value());
    next_of(client, ex::Type::Flip);
    // Frames keep coming for longer than the no-ACK rule's second; each transfer into the held
    // framebuffer waits out the release timeout and goes on.
    uint32_t frames = 0;
    bool revoked = false;
    for (; frames < 200 && !revoked; ++frames) {
        ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, 640, 16 }).type, OK);
        ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 640, 16 }).type, OK);
        std::this_thread::sleep_for(10ms);
        for (;;) {
            auto m = client.next(0ms);
            ASSERT_TRUE(m.has_value()) << m.error().message;
            if (!*m)
                break;
            if (auto r = (*m)->as<ex::Revoked>()) {
                EXPECT_EQ(r->reason, uint32_t(ex::RevokeReason::NoAck));
                revoked = true;
            }
        }
    }
    EXPECT_TRUE(revoked) << frames << " frames without an ACK and no REVOKED";
    auto s = stats();
    EXPECT_EQ(s["no-ack-revoked"], 1);
    EXPECT_GE(s["ack-timeouts"], 1);
    EXPECT_EQ(s["ack-timeouts"], control->call("query-stats")["transfer-wait-timeouts"]);
    // The shared lease that never acked either is still served.
    auto list = control->call("lease-list");
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["consumer"], "shared");
    // With the exclusive lease gone, transfers wait for nobody.
    uint64_t waits = control->call("query-stats")["transfer-waits"];
    ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, 640, 16 }).type, OK);
    EXPECT_EQ(control->call("query-stats")["transfer-waits"], waits);
}

// A small framebuffer goes out through the ring: an exclusive consumer's unacknowledged slots
// are passed over while others are free, and written anyway (counted) once it holds them all.
TEST_F(Export, ExclusiveRing_HeldSlotsArePassedOver_UntilTheConsumerHoldsThemAll)
{
    start();
    show(1, 64, 64, picture(64, 64, 23));
    auto client = consumer("exclusive");
    auto lease = client.lease(0, ex::LeaseKind::Exclusive);
    ASSERT_TRUE(lease.has_value());
    std::vector<uint32_t> shown { next_of(client, ex::Type::Flip).as<ex::Flip>()->buffer };
    auto flush = [&] {
        EXPECT_EQ(gpu->flush(1, Rect { 0, 0, 64, 64 }).type, OK);
        auto f = next_of(client, ex::Type::Flip).as<ex::Flip>();
        shown.push_back(f->buffer);
        return f->generation;
    };
    flush();
    uint64_t third = flush();
    // Three slots, three frames unacknowledged: three different buffers, nothing overwritten.
    EXPECT_EQ(std::set<uint32_t>(shown.begin(), shown.end()).size(), 3u);
    EXPECT_EQ(stats()["held-overwritten"], 0);
    flush();
    EXPECT_EQ(stats()["held-overwritten"], 1);
    // An ACK frees them: the next frames overwrite nothing held.
    ASSERT_TRUE(client.ack(lease->lease, third + 1).has_value());
    flush();
    flush();
    EXPECT_EQ(stats()["held-overwritten"], 1);
    EXPECT_EQ(shown[3], shown[0]) << "the oldest held slot is the one written";
    EXPECT_EQ(shown[4], shown[1]) << "then the ring goes round";
}

// --export-guest-memory: a GUEST_MEMORY lease gets the blob's own pages (a read-only fd of guest
// RAM and the extents), the backend copies nothing, and an exclusive lease's unacknowledged frame
// holds the blob's release fence.
TEST_F(Export, GuestMemory_ABlobsOwnPagesWithTheirExtents_NoCopy_AnExclusiveAckReleasesTheFence)
{
    start({ "--blob", "--export-guest-memory", "--release-timeout", "10000" },
        /*display_socket=*/false);
    constexpr uint32_t w = 320, h = 240;
    const Rect full { 0, 0, w, h };
    auto a = picture(w, h, 30), b = picture(w, h, 31);
    auto blob_a = harness::ScatteredBuffer::allocate(session->ram(), uint64_t(w) * h * 4, 5);
    auto blob_b = harness::ScatteredBuffer::allocate(session->ram(), uint64_t(w) * h * 4, 6);
    blob_a.write(session->ram(), 0, a);
    blob_b.write(session->ram(), 0, b);
    ASSERT_EQ(gpu->create_blob(1, blob_a.size, blob_a.entries).type, OK);
    ASSERT_EQ(gpu->create_blob(2, blob_b.size, blob_b.entries).type, OK);
    ASSERT_EQ(gpu->set_scanout_blob(0, 1, w, h, XRGB, w * 4, 0, full).type, OK);
    ASSERT_EQ(gpu->flush(1, full).type, OK);

    auto caps = control->call("query-capabilities")["vgpu-display"]["export"];
    EXPECT_EQ(caps["plane-types"], json::array({ "region", "guest-memory" }));
    auto client = consumer("trusted");
    auto probe = client.probe();
    ASSERT_TRUE(probe.has_value());
    EXPECT_EQ(probe->plane_types, uint32_t(ex::PLANE_REGION | ex::PLANE_GUEST_MEMORY));
    auto lease = client.lease(0, ex::LeaseKind::Exclusive, ex::PLANE_GUEST_MEMORY);
    ASSERT_TRUE(lease.has_value()) << lease.error().message;
    ex::BufferAssembler assembler;
    std::map<uint32_t, ex::MappedBuffer> buffers;
    int descriptor = -1;
    uint32_t extents_messages = 0;
    auto next_flip = [&] {
        std::vector<ex::Message> before;
        auto flip = next_of(client, ex::Type::Flip, &before).as<ex::Flip>();
        for (auto& m : before) {
            if (auto buffer = m.as<ex::Buffer>()) {
                EXPECT_EQ(buffer->plane_type, uint32_t(ex::PLANE_GUEST_MEMORY));
                EXPECT_GT(buffer->extents, 1u) << "the blob is scattered";
                descriptor = ::dup(m.fds[0].get());
            }
            extents_messages += m.type() == ex::Type::Extents;
            if (m.type() == ex::Type::Buffer || m.type() == ex::Type::Extents) {
                auto mapped = assembler.add(m);
                EXPECT_TRUE(mapped.has_value()) << (mapped ? "" : mapped.error().message);
                if (mapped && *mapped)
                    buffers.emplace((*mapped)->info().buffer, std::move(**mapped));
            }
        }
        return flip;
    };
    // The image as a consumer reads it: row by row through the extents.
    auto image = [&](uint32_t id) {
        std::vector<std::byte> out, scratch;
        const auto& buffer = buffers.at(id);
        for (uint32_t y = 0; y < h; ++y) {
            const std::byte* row = buffer.bytes(uint64_t(y) * w * 4, size_t(w) * 4, scratch);
            if (!row)
                return std::vector<std::byte> {};
            out.insert(out.end(), row, row + size_t(w) * 4);
        }
        return out;
    };
    auto first = next_flip();
    ASSERT_TRUE(first.has_value());
    ASSERT_EQ(buffers.count(first->buffer), 1u);
    EXPECT_TRUE(buffers.at(first->buffer).scattered());
    EXPECT_GE(extents_messages, 1u);
    EXPECT_EQ(image(first->buffer), a);
    // Read-only guest RAM: a shared writable mapping is refused.
    EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0), MAP_FAILED);
    ::close(descriptor);
    // The guest draws into the blob on screen: the consumer sees it in place, nothing copied.
    blob_a.write(session->ram(), 0, b);
    ASSERT_EQ(gpu->flush(1, full).type, OK);
    auto second = next_flip();
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(second->buffer, first->buffer);
    EXPECT_EQ(image(first->buffer), b);
    EXPECT_EQ(stats()["bytes-copied"], 0);

    // A flip to blob 2: its fenced flush waits while the consumer still holds blob 1.
    ASSERT_EQ(gpu->set_scanout_blob(0, 2, w, h, XRGB, w * 4, 0, full).type, OK);
    uint64_t response = gpu->submit_flush_fenced(2, full, 7);
    auto third = next_flip();
    ASSERT_TRUE(third.has_value());
    EXPECT_NE(third->buffer, first->buffer);
    EXPECT_EQ(image(third->buffer), b);
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(session->control().used_pending()) << "the fence came before the consumer's ACK";
    ASSERT_TRUE(client.ack(lease->lease, third->generation).has_value());
    ASSERT_TRUE(session->control().wait_used().has_value());
    auto answer = session->ram().get<virtio_gpu::CtrlHdr>(response);
    EXPECT_EQ(answer.type, OK);
    EXPECT_EQ(answer.fence_id, 7u);
    auto device = control->call("query-stats");
    EXPECT_EQ(device["blob"]["release-waits"], 1) << device.dump();
    EXPECT_EQ(device["blob"]["release-timeouts"], 0) << device.dump();
    EXPECT_EQ(stats()["bytes-copied"], 0);

    // A region lease beside it gets copies; the guest-memory lease still none of its own.
    auto viewer = consumer("untrusted");
    ASSERT_TRUE(viewer.lease(0, ex::LeaseKind::Shared).has_value());
    auto copy = next_of(viewer, ex::Type::Buffer).as<ex::Buffer>();
    EXPECT_EQ(copy->plane_type, uint32_t(ex::PLANE_REGION));

    // A device reset takes guest memory back: BUFFER_GONE of each guest buffer, then REVOKED.
    session->reset_and_reinit(vhost::Request::ResetDevice);
    std::vector<ex::Message> before;
    auto revoked = next_of(client, ex::Type::Revoked, &before).as<ex::Revoked>();
    ASSERT_TRUE(revoked.has_value());
    EXPECT_EQ(revoked->reason, uint32_t(ex::RevokeReason::DeviceReset));
    std::set<uint32_t> gone;
    for (const auto& m : before)
        if (auto g = m.as<ex::BufferGone>())
            gone.insert(g->buffer);
    EXPECT_TRUE(gone.count(first->buffer) && gone.count(third->buffer));
    auto list = control->call("lease-list");
    ASSERT_EQ(list.size(), 1u) << "the region lease stays";
    EXPECT_EQ(list[0]["consumer"], "untrusted");
}

// 64 consumers at once, each with a lease, all served; the 65th is answered BUSY and closed.
// A consumer process killed while frames flow (SIGKILL, mid-read) leaves no lease, no hold and a
// device that never waited for it.
TEST_F(Export, SixtyFourConsumers_TheNextIsRefused_AConsumerKilledMidFrameLeavesNothing)
{
    start();
    show(1, 640, 480, picture(640, 480, 40));
    std::vector<ex::Client> clients;
    for (int i = 0; i < 64; ++i) {
        clients.push_back(consumer("many"));
        ASSERT_TRUE(clients.back().lease(0, ex::LeaseKind::Shared).has_value()) << i;
    }
    auto refused = ex::Client::connect(export_path, "one too many", 3000ms);
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("consumers already"), std::string::npos)
        << refused.error().message;
    EXPECT_EQ(stats()["refused"], 1);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 640, 480 }).type, OK);
    for (auto& c : clients) {
        next_of(c, ex::Type::Flip); // the lease's
        auto second = next_of(c, ex::Type::Flip).as<ex::Flip>();
        ASSERT_TRUE(second.has_value());
        EXPECT_EQ(second->generation, 2u);
    }
    clients.clear();
    for (int i = 0; i < 200 && stats()["consumers"] != 0; ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(stats()["consumers"], 0);

    // An exclusive consumer in a process of its own, killed while it reads frames.
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t child = ::fork();
    if (child == 0) {
        auto c = ex::Client::connect(export_path, "doomed", 3000ms);
        if (!c || !c->lease(0, ex::LeaseKind::Exclusive))
            ::_exit(1);
        char one = 1;
        [[maybe_unused]] ssize_t n = ::write(ready[1], &one, 1);
        for (;;)
            (void)c->next(1000ms); // reads, never acknowledges
    }
    ::close(ready[1]);
    char one = 0;
    ASSERT_EQ(::read(ready[0], &one, 1), 1);
    ::close(ready[0]);
    for (uint32_t i = 0; i < 20; ++i) {
        ASSERT_EQ(gpu->transfer(1, Rect { 0, i, 640, 1 }, uint64_t(i) * 640 * 4).type, OK);
        ASSERT_EQ(gpu->flush(1, Rect { 0, i, 640, 1 }).type, OK);
        if (i == 10)
            ::kill(child, SIGKILL);
    }
    ::waitpid(child, nullptr, 0);
    for (int i = 0; i < 200 && !control->call("lease-list").empty(); ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(control->call("lease-list").empty());
    // Its holds went with it: the next transfers wait for nobody.
    uint64_t waits = control->call("query-stats")["transfer-waits"];
    for (uint32_t i = 0; i < 5; ++i)
        ASSERT_EQ(gpu->transfer(1, Rect { 0, i, 640, 1 }, uint64_t(i) * 640 * 4).type, OK);
    EXPECT_EQ(control->call("query-stats")["transfer-waits"], waits);
    EXPECT_TRUE(backend->alive());
}

// The DMABUF plane: with --export-guest-memory and a dmabuf exporter (here the memfd stand-in,
// since these machines have no /dev/udmabuf), a DMABUF lease gets the blob's own dmabuf.
TEST_F(Export, Dmabuf_WithAnExporter_ADmabufLeaseGetsTheBlobsDmabuf_NoCopy)
{
    start({ "--blob", "--export-guest-memory", "--dmabuf", "memfd-test" });
    constexpr uint32_t w = 320, h = 240;
    const Rect full { 0, 0, w, h };
    auto pixels = picture(w, h, 50);
    auto blob = harness::ScatteredBuffer::allocate(session->ram(), uint64_t(w) * h * 4, 8);
    blob.write(session->ram(), 0, pixels);
    ASSERT_EQ(gpu->create_blob(1, blob.size, blob.entries).type, OK);
    ASSERT_EQ(gpu->set_scanout_blob(0, 1, w, h, XRGB, w * 4, 0, full).type, OK);
    ASSERT_EQ(gpu->flush(1, full).type, OK);
    auto caps = control->call("query-capabilities")["vgpu-display"]["export"];
    EXPECT_EQ(caps["plane-types"], json::array({ "region", "dmabuf", "guest-memory" }));
    auto client = consumer("dmabuf");
    auto probe = client.probe();
    ASSERT_TRUE(probe.has_value());
    EXPECT_TRUE(probe->plane_types & ex::PLANE_DMABUF);
    ASSERT_TRUE(client.lease(0, ex::LeaseKind::Shared, ex::PLANE_DMABUF).has_value());
    auto message = next_of(client, ex::Type::Buffer);
    auto buffer = message.as<ex::Buffer>();
    ASSERT_TRUE(buffer.has_value());
    EXPECT_EQ(buffer->plane_type, uint32_t(ex::PLANE_DMABUF));
    EXPECT_EQ(buffer->extents, 0u);
    auto mapped = ex::MappedBuffer::map(*buffer, message.fds[0]);
    ASSERT_TRUE(mapped.has_value()) << mapped.error().message;
    EXPECT_EQ(std::memcmp(mapped->data(), pixels.data(), pixels.size()), 0);
    EXPECT_EQ(next_of(client, ex::Type::Flip).as<ex::Flip>()->buffer, buffer->buffer);
    EXPECT_EQ(stats()["bytes-copied"], 0);
    // Without an exporter there is no dmabuf plane to lease.
    auto plain = BackendProcess::run_to_completion(
        { "--print-capabilities", "--export", dir + "/x.sock", "--export-guest-memory" });
    auto printed = json::parse(plain.out, nullptr, false);
    ASSERT_FALSE(printed.is_discarded()) << plain.out << plain.err;
    EXPECT_EQ(printed["vgpu-display"]["export"]["plane-types"],
        json::array({ "region", "guest-memory" }));
}

// vgpu-ctl, run as a command: its exit code, stdout and stderr.
struct Ctl {
    int exit_code = -1;
    std::string out, err;
};
std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}
std::string ctl_command(
    const std::string& dir, const std::vector<std::string>& args, const char* err = "ctl.err")
{
    std::string command = std::string("timeout -k 2 20 ") + VGPU_CTL_BINARY;
    for (const auto& a : args)
        command += " '" + a + "'";
    return command + " 2>" + dir + "/" + err;
}
Ctl run_ctl(const std::string& dir, const std::vector<std::string>& args)
{
    Ctl result;
    FILE* pipe = ::popen(ctl_command(dir, args).c_str(), "r");
    if (!pipe)
        return result;
    char chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0)
        result.out.append(chunk, n);
    int status = ::pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.err = slurp(dir + "/ctl.err");
    return result;
}

TEST_F(Export, VgpuCtl_PlanesWatchLeasesAndRevoke)
{
    start({ "--output", "640x480" }, /*display_socket=*/false);
    auto pixels = picture(640, 480, 9);
    show(1, 640, 480, pixels);

    auto planes = run_ctl(dir, { "planes", "--export", export_path });
    ASSERT_EQ(planes.exit_code, 0) << planes.err;
    EXPECT_NE(planes.out.find("protocol 1.0, plane types region, crc yes"), std::string::npos)
        << planes.out;
    EXPECT_NE(planes.out.find("output 0: 640x480 XR24 generation 1\n"), std::string::npos)
        << planes.out;
    auto planes_json = run_ctl(dir, { "--json", "planes", "--export", export_path });
    ASSERT_EQ(planes_json.exit_code, 0) << planes_json.err;
    auto probe = json::parse(planes_json.out, nullptr, false);
    ASSERT_FALSE(probe.is_discarded()) << planes_json.out;
    EXPECT_EQ(probe["outputs"][0]["width"], 640);
    EXPECT_EQ(probe["plane-types"], json::array({ "region" }));

    // watch: a shared lease whose records come out as lines, read here as they come.
    std::mutex mutex;
    std::vector<std::string> lines;
    int watch_exit = -1;
    std::string watch_err;
    std::thread watcher([&] {
        FILE* pipe = ::popen(
            ctl_command(dir, { "watch", "0", "--export", export_path }, "watch.err").c_str(), "r");
        ASSERT_NE(pipe, nullptr);
        char line[512];
        while (std::fgets(line, sizeof(line), pipe)) {
            std::lock_guard lock(mutex);
            lines.emplace_back(line);
        }
        int status = ::pclose(pipe);
        std::lock_guard lock(mutex);
        watch_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        watch_err = slurp(dir + "/watch.err");
    });
    auto line_count = [&] {
        std::lock_guard lock(mutex);
        return lines.size();
    };
    json list;
    for (int i = 0; i < 300 && (list = control->call("lease-list")).empty(); ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["consumer"], "vgpu-ctl");
    uint32_t lease = list[0]["lease"];
    auto leases = run_ctl(dir, { "--control", control_path, "leases" });
    EXPECT_EQ(leases.exit_code, 0) << leases.err;
    EXPECT_EQ(
        leases.out.find(fmt::format("lease {} output 0 shared region consumer vgpu-ctl", lease)),
        0u)
        << leases.out;

    for (uint32_t y : { 100u, 200u, 300u }) {
        Rect band { 0, y, 640, 20 };
        ASSERT_EQ(gpu->transfer(1, band, uint64_t(y) * 640 * 4).type, OK);
        ASSERT_EQ(gpu->flush(1, band).type, OK);
        // One flush at a time, so that none coalesce.
        for (int i = 0; i < 300 && line_count() < 4 + (y - 100) / 100; ++i)
            std::this_thread::sleep_for(10ms);
    }
    {
        std::lock_guard lock(mutex);
        ASSERT_EQ(lines.size(), 6u);
        EXPECT_EQ(lines[0], "mode 640x480\n");
        EXPECT_EQ(lines[1].find("buffer 1 640x480 XR24 stride=2560 size="), 0u) << lines[1];
        EXPECT_EQ(lines[2], "flip generation=1 covers=1 buffer=1 damage=0,0,640x480\n");
        EXPECT_EQ(lines[3], "flip generation=2 covers=1 buffer=1 damage=0,100,640x20\n");
        EXPECT_EQ(lines[4], "flip generation=3 covers=1 buffer=1 damage=0,200,640x20\n");
        EXPECT_EQ(lines[5], "flip generation=4 covers=1 buffer=1 damage=0,300,640x20\n");
    }
    // watch acknowledges every flip it prints (after printing it: the ACK may still be on its
    // way when the line is read).
    json acked;
    for (int i = 0; i < 300 && (acked = control->call("lease-list")[0]["generation-acked"]) != 4;
         ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(acked, 4);

    auto revoke = run_ctl(
        dir, { "--control", control_path, "lease-revoke", std::to_string(lease) });
    EXPECT_EQ(revoke.exit_code, 0) << revoke.err;
    watcher.join();
    EXPECT_EQ(watch_exit, 1);
    EXPECT_EQ(lines.back(), "revoked reason=control\n");
    EXPECT_NE(watch_err.find("the lease was revoked"), std::string::npos) << watch_err;

    auto again = run_ctl(dir, { "--control", control_path, "lease-revoke", std::to_string(lease) });
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("InvalidParameter"), std::string::npos) << again.err;
    auto bad = run_ctl(dir, { "--control", control_path, "lease-revoke", "x" });
    EXPECT_EQ(bad.exit_code, 2) << bad.err;
    auto none = run_ctl(dir, { "watch", "0" });
    EXPECT_EQ(none.exit_code, 2) << none.err;
    EXPECT_NE(none.err.find("no export socket"), std::string::npos) << none.err;
    auto no_output = run_ctl(dir, { "watch", "7", "--export", export_path });
    EXPECT_EQ(no_output.exit_code, 1) << no_output.err;
    EXPECT_NE(no_output.err.find("lease of output 7"), std::string::npos) << no_output.err;
}

} // namespace
} // namespace vgpu::integration
