// A hostile guest driver against the real backend process, driven as QEMU drives it: every case
// gets its exact answer (the spec's error where it names one, QEMU's built-in device's answer
// where it does not; docs/hostile-guest.md), and after every case the backend keeps serving and
// stays alive. Also the pixels, cursor and display info that reach QEMU's display socket.
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "display/qemu/wire.h"
#include "harness/gpu_driver.h"
#include "integration/common.h"

namespace vgpu::integration {

using display::qemu::GpuRequest;
using harness::BackendProcess;
using harness::DisplayMessage;
using harness::GpuDriver;
using harness::GuestRam;
using harness::QemuSession;
using virtio_gpu::CtrlHdr;
using virtio_gpu::CtrlType;
using virtio_gpu::MemEntry;
using virtio_gpu::Rect;

namespace {

constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t ARGB = uint32_t(virtio_gpu::Format::B8G8R8A8Unorm);
constexpr uint32_t RGBA = uint32_t(virtio_gpu::Format::R8G8B8A8Unorm);

std::vector<std::byte> pattern(size_t size, uint32_t seed)
{
    std::vector<std::byte> out(size);
    for (size_t i = 0; i < size; ++i)
        out[i] = std::byte(uint8_t((i * 29 + (i >> 8) * 11 + seed) & 0xff));
    return out;
}

template <typename T>
T payload_as(const DisplayMessage& message)
{
    T value {};
    EXPECT_GE(message.payload.size(), sizeof(T));
    std::memcpy(&value, message.payload.data(), std::min(message.payload.size(), sizeof(T)));
    return value;
}

uint32_t request_id(GpuRequest r) { return uint32_t(r); }

class HostileGpu : public ::testing::Test {
protected:
    void start(const std::vector<std::string>& args = {}, bool display_socket = true)
    {
        backend = std::make_unique<BackendProcess>(BackendProcess::listen(args));
        harness::SessionOptions options;
        options.with_display_socket = display_socket;
        session = std::make_unique<QemuSession>(backend->socket_path(), options);
        session->start();
        gpu = std::make_unique<GpuDriver>(*session);
    }

    // The backend still answers a good command and its process lives.
    void expect_serving()
    {
        auto info = gpu->get_display_info();
        EXPECT_TRUE(info.has_value() && info->hdr.type == uint32_t(CtrlType::OkDisplayInfo))
            << "the backend stopped serving";
        EXPECT_TRUE(backend->alive()) << backend->log();
    }
    DisplayMessage wait_for(GpuRequest request)
    {
        auto message = session->display()->wait_for(request_id(request));
        EXPECT_TRUE(message.has_value())
            << "no message " << request_id(request) << " on the display socket";
        return message.value_or(DisplayMessage {});
    }

    std::unique_ptr<BackendProcess> backend;
    std::unique_ptr<QemuSession> session;
    std::unique_ptr<GpuDriver> gpu;
};

// One hostile command: its exact answer, then a good command still works.
#define EXPECT_ANSWER(command, expected)                                                           \
    do {                                                                                           \
        CtrlHdr _answer = (command);                                                               \
        EXPECT_EQ(_answer.type, uint32_t(expected)) << #command;                                   \
        expect_serving();                                                                          \
    } while (0)

// ---- resource ids -----------------------------------------------------------------------------

TEST_F(HostileGpu, ResourceIds_ZeroUnknownAndDuplicate_AnswerErrInvalidResourceId)
{
    start();
    uint64_t backing = gpu->create_with_backing(1, 64, 64, XRGB);
    MemEntry entry { backing, 64 * 64 * 4, 0 };
    const Rect all { 0, 0, 64, 64 };

    EXPECT_ANSWER(gpu->create_2d(0, 64, 64), CtrlType::ErrInvalidResourceId);
    EXPECT_ANSWER(gpu->create_2d(1, 64, 64), CtrlType::ErrInvalidResourceId);
    for (uint32_t id : { 0u, 2u, 0xFFFFFFFFu }) {
        SCOPED_TRACE(id);
        EXPECT_ANSWER(gpu->unref(id), CtrlType::ErrInvalidResourceId);
        EXPECT_ANSWER(
            gpu->attach_backing(id, std::span(&entry, 1)), CtrlType::ErrInvalidResourceId);
        EXPECT_ANSWER(gpu->detach_backing(id), CtrlType::ErrInvalidResourceId);
        EXPECT_ANSWER(gpu->transfer(id, all), CtrlType::ErrInvalidResourceId);
        EXPECT_ANSWER(gpu->flush(id, all), CtrlType::ErrInvalidResourceId);
        if (id != 0) // resource 0 is the spec's way to disable a scanout
            EXPECT_ANSWER(gpu->set_scanout(0, id, all), CtrlType::ErrInvalidResourceId);
    }
    EXPECT_ANSWER(gpu->set_scanout(0, 0, Rect {}), CtrlType::OkNodata);
    // Resource 1 came through all of it untouched.
    EXPECT_ANSWER(gpu->transfer(1, all), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->set_scanout(0, 1, all), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->unref(1), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->unref(1), CtrlType::ErrInvalidResourceId);
}

// ---- formats and sizes ------------------------------------------------------------------------

TEST_F(HostileGpu, FormatsOutOfRange_AnswerErrInvalidParameter)
{
    start();
    for (uint32_t format : { 0u, 5u, 66u, 200u, 0xFFFFFFFFu }) {
        SCOPED_TRACE(format);
        EXPECT_ANSWER(gpu->create_2d(1, 64, 64, format), CtrlType::ErrInvalidParameter);
    }
    for (uint32_t format : { 1u, 2u, 3u, 4u, 67u, 68u, 121u, 134u }) {
        SCOPED_TRACE(format);
        EXPECT_ANSWER(gpu->create_2d(format, 64, 64, format), CtrlType::OkNodata);
    }
}

TEST_F(HostileGpu, HugeAndEmptySizes_AnswerErrOutOfMemory)
{
    start();
    EXPECT_ANSWER(gpu->create_2d(1, 0xFFFFFFFF, 0xFFFFFFFF), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(
        gpu->create_2d(1, 65536, 65536), CtrlType::ErrOutOfMemory); // 2^34 bytes, 0 in 32 bits
    EXPECT_ANSWER(
        gpu->create_2d(1, 0x40000000, 4), CtrlType::ErrOutOfMemory); // width * 4 wraps 32 bits
    EXPECT_ANSWER(
        gpu->create_2d(1, 16384, 16384), CtrlType::ErrOutOfMemory); // 1 GiB > --max-hostmem
    // QEMU 10 cannot map an empty memfd for a 0-sized resource: ERR_OUT_OF_MEMORY.
    EXPECT_ANSWER(gpu->create_2d(1, 0, 64), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(gpu->create_2d(1, 64, 0), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(gpu->create_2d(1, 0, 0), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(gpu->create_2d(1, 64, 64), CtrlType::OkNodata);
}

TEST_F(HostileGpu, MaxHostmem_LimitIsExclusiveAndUnrefGivesMemoryBack)
{
    start({ "--max-hostmem", "1M" });
    // Exactly 1 MiB of pixels alone reaches the limit; with its CRC cache and bookkeeping
    // (counted too) a second half-MiB resource does not fit next to the first.
    EXPECT_ANSWER(gpu->create_2d(1, 512, 512), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(gpu->create_2d(1, 512, 256), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->create_2d(2, 512, 255), CtrlType::ErrOutOfMemory);
    EXPECT_ANSWER(gpu->create_2d(2, 512, 200), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->create_2d(3, 16, 16), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->unref(3), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->unref(1), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->create_2d(3, 512, 256), CtrlType::OkNodata);
}

// ---- backing ----------------------------------------------------------------------------------

TEST_F(HostileGpu, BackingEntriesOutsideGuestRam_AnswerErrUnspec)
{
    start();
    ASSERT_EQ(gpu->create_2d(1, 64, 64).type, uint32_t(CtrlType::OkNodata));
    uint64_t low_end = session->ram().low_size();
    const MemEntry outside[] = {
        { 0x40000000, 4096, 0 }, // the hole between low and high memory
        { low_end - 4096, 8192, 0 }, // runs off the end of low memory
        { GuestRam::high_base + (16 << 20), 4096, 0 }, // just past high memory
        { GuestRam::high_base - 4096, 8192, 0 }, // from the hole into high memory
        { 0xFFFFFFFFFFFFF000, 0x2000, 0 }, // addr + length wraps
    };
    for (const auto& e : outside) {
        SCOPED_TRACE(e.addr);
        EXPECT_ANSWER(gpu->attach_backing(1, std::span(&e, 1)), CtrlType::ErrUnspec);
    }
    // A good entry after a bad one still fails the whole command.
    const MemEntry mixed[] = { { 1 << 20, 4096, 0 }, { 0x40000000, 4096, 0 } };
    EXPECT_ANSWER(gpu->attach_backing(1, mixed), CtrlType::ErrUnspec);
    // Nothing was attached by the failures.
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 64 }), CtrlType::ErrUnspec);
    MemEntry good { session->ram().alloc(64 * 64 * 4, 4096), 64 * 64 * 4, 0 };
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&good, 1)), CtrlType::OkNodata);
}

TEST_F(HostileGpu, BackingEntryCounts_AnswerErrUnspec_OverlapIsAccepted)
{
    start();
    ASSERT_EQ(gpu->create_2d(1, 64, 64).type, uint32_t(CtrlType::OkNodata));
    uint64_t gpa = session->ram().alloc(64 * 64 * 4, 4096);
    MemEntry entry { gpa, 64 * 64 * 4, 0 };

    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&entry, 1), 16385), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&entry, 1), 0xFFFFFFFF), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&entry, 1), 2),
        CtrlType::ErrUnspec); // more than the buffer holds
    // QEMU checks the resource before the entries.
    EXPECT_ANSWER(
        gpu->attach_backing(9, std::span(&entry, 1), 16385), CtrlType::ErrInvalidResourceId);
    const MemEntry empty_entry[] = { { gpa, 0, 0 } };
    EXPECT_ANSWER(
        gpu->attach_backing(1, empty_entry), CtrlType::ErrUnspec); // QEMU cannot map 0 bytes
    // No entries: accepted, but the resource still has no backing (as QEMU).
    EXPECT_ANSWER(gpu->attach_backing(1, {}), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 64 }), CtrlType::ErrUnspec);
    // Overlapping entries are accepted, as QEMU does.
    const MemEntry overlapping[] = { { gpa, 64 * 64 * 2, 0 }, { gpa + 4096, 64 * 64 * 2, 0 } };
    EXPECT_ANSWER(gpu->attach_backing(1, overlapping), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 64 }), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&entry, 1)), CtrlType::ErrUnspec); // twice
    EXPECT_ANSWER(gpu->detach_backing(1), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->detach_backing(1), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->attach_backing(1, std::span(&entry, 1)), CtrlType::OkNodata);
}

TEST_F(HostileGpu, MaximumBackingEntries_AreAccepted)
{
    start();
    // 16384 entries of 16 bytes each: exactly QEMU's limit.
    ASSERT_EQ(gpu->create_2d(1, 256, 256).type, uint32_t(CtrlType::OkNodata));
    uint64_t gpa = session->ram().alloc(256 * 256 * 4, 4096);
    std::vector<MemEntry> entries(16384);
    for (size_t i = 0; i < entries.size(); ++i)
        entries[i] = { gpa + 16 * i, 16, 0 };

    EXPECT_ANSWER(gpu->attach_backing(1, entries), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 256, 256 }), CtrlType::OkNodata);
}

// ---- transfers --------------------------------------------------------------------------------

TEST_F(HostileGpu, TransfersOutsideTheResource_AnswerErrInvalidParameter)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    const Rect outside[] = {
        { 0, 0, 65, 48 },
        { 0, 0, 64, 49 },
        { 1, 0, 64, 48 },
        { 0, 1, 64, 48 },
        { 65, 0, 0, 0 },
        { 0xFFFFFFFF, 0, 2, 1 }, // x + w wraps to 1
        { 0, 0xFFFFFFF0, 1, 0x20 }, // y + h wraps
        { 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF },
    };
    for (const auto& r : outside) {
        SCOPED_TRACE(testing::Message() << r.x << "," << r.y << " " << r.width << "x" << r.height);
        EXPECT_ANSWER(gpu->transfer(1, r), CtrlType::ErrInvalidParameter);
    }
}

TEST_F(HostileGpu, TransferOffsetsBeyondTheBacking_CopyWhatIsThereAndAnswerOk)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    // As QEMU (iov_to_buf): whatever lies past the backing is not copied; no error.
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 48 }, 64 * 48 * 4), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 48 }, 64 * 4), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 8, 8, 8, 8 }, 0xFFFFFFFFFFFFFFFF), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 48 }, 0xFFFFFFFFFFFFFFFF), CtrlType::OkNodata);
}

TEST_F(HostileGpu, TransferWithoutBacking_AnswersErrUnspec)
{
    start();
    ASSERT_EQ(gpu->create_2d(1, 64, 48).type, uint32_t(CtrlType::OkNodata));
    EXPECT_ANSWER(gpu->transfer(1, Rect { 0, 0, 64, 48 }), CtrlType::ErrUnspec);
    gpu->create_with_backing(2, 64, 48, XRGB);
    ASSERT_EQ(gpu->detach_backing(2).type, uint32_t(CtrlType::OkNodata));
    EXPECT_ANSWER(gpu->transfer(2, Rect { 0, 0, 64, 48 }), CtrlType::ErrUnspec);
}

// ---- scanouts and flushes ---------------------------------------------------------------------

TEST_F(HostileGpu, ScanoutRectanglesOutsideOrBelow16x16_AnswerErrInvalidParameter)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    const Rect bad[] = {
        { 0, 0, 65, 48 },
        { 0, 0, 64, 49 },
        { 49, 0, 16, 16 },
        { 0, 33, 16, 16 },
        { 0xFFFFFFF0, 0, 0x20, 16 }, // x + w wraps
        { 0, 0, 15, 48 },
        { 0, 0, 64, 15 },
        { 0, 0, 0, 0 },
    };
    for (const auto& r : bad) {
        SCOPED_TRACE(testing::Message() << r.x << "," << r.y << " " << r.width << "x" << r.height);
        EXPECT_ANSWER(gpu->set_scanout(0, 1, r), CtrlType::ErrInvalidParameter);
    }
    EXPECT_ANSWER(gpu->set_scanout(0, 1, Rect { 48, 32, 16, 16 }), CtrlType::OkNodata);
    // No backing: QEMU's ERR_UNSPEC, before the rectangle is looked at.
    ASSERT_EQ(gpu->create_2d(2, 64, 48).type, uint32_t(CtrlType::OkNodata));
    EXPECT_ANSWER(gpu->set_scanout(0, 2, Rect { 0, 0, 64, 48 }), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->set_scanout(0, 2, Rect { 0, 0, 1, 1 }), CtrlType::ErrUnspec);
}

TEST_F(HostileGpu, ScanoutIdWithoutDisplaySocket_IsLimitedToOurOutputs)
{
    start({ "--output", "640x480", "--output", "800x600" }, /*display_socket=*/false);
    gpu->create_with_backing(1, 64, 48, XRGB);
    const Rect r { 0, 0, 64, 48 };

    EXPECT_ANSWER(gpu->set_scanout(1, 1, r), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->set_scanout(2, 1, r), CtrlType::ErrInvalidScanoutId);
    EXPECT_ANSWER(gpu->set_scanout(16, 1, r), CtrlType::ErrInvalidScanoutId);
    EXPECT_ANSWER(gpu->set_scanout(0xFFFFFFFF, 0, r), CtrlType::ErrInvalidScanoutId);
    auto info = gpu->get_display_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->pmodes[1].r.width, 800u);
    EXPECT_EQ(info->pmodes[1].r.height, 600u);
    EXPECT_EQ(info->pmodes[2].enabled, 0u);
}

TEST_F(HostileGpu, ScanoutIdWithDisplaySocket_IsLimitedToSixteen)
{
    start({ "--output", "640x480" });
    gpu->create_with_backing(1, 64, 48, XRGB);
    const Rect r { 0, 0, 64, 48 };

    // QEMU owns num_scanouts (max_outputs, up to 16) when it hands over its display socket.
    EXPECT_ANSWER(gpu->set_scanout(15, 1, r), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->set_scanout(16, 1, r), CtrlType::ErrInvalidScanoutId);
    EXPECT_ANSWER(gpu->set_scanout(0xFFFFFFFF, 1, r), CtrlType::ErrInvalidScanoutId);
    auto scanout = wait_for(GpuRequest::Scanout);
    auto s = payload_as<display::qemu::GpuScanout>(scanout);
    EXPECT_EQ(s.scanout_id, 15u);
    EXPECT_EQ(s.width, 64u);
    EXPECT_EQ(s.height, 48u);
}

TEST_F(HostileGpu, FlushOfAResourceNotScannedOut_AnswersOkNodata)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    EXPECT_ANSWER(gpu->flush(1, Rect { 0, 0, 64, 48 }), CtrlType::OkNodata);
    EXPECT_ANSWER(gpu->flush(1, Rect { 0, 0, 65, 48 }), CtrlType::ErrInvalidParameter);
    EXPECT_ANSWER(gpu->flush(1, Rect { 0xFFFFFFFF, 0, 2, 1 }), CtrlType::ErrInvalidParameter);
    EXPECT_EQ(session->display()->count(request_id(GpuRequest::Update)), 0u);
}

TEST_F(HostileGpu, UnrefWhileScannedOut_AnswersOkNodataAndDisablesTheScanout)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, 64, 48 }).type, uint32_t(CtrlType::OkNodata));

    EXPECT_ANSWER(gpu->unref(1), CtrlType::OkNodata);

    auto disabled = session->display()->wait_for_matching(
        request_id(GpuRequest::Scanout), [](const DisplayMessage& m) {
            auto s = payload_as<display::qemu::GpuScanout>(m);
            return s.width == 0 && s.height == 0;
        });
    ASSERT_TRUE(disabled.has_value()) << "QEMU was not told that the scanout is off";
    EXPECT_EQ(payload_as<display::qemu::GpuScanout>(*disabled).scanout_id, 0u);
    EXPECT_EQ(session->display()->count(request_id(GpuRequest::Scanout)), 2u);
    EXPECT_ANSWER(gpu->flush(1, Rect { 0, 0, 64, 48 }), CtrlType::ErrInvalidResourceId);
}

// ---- the cursor queue -------------------------------------------------------------------------

TEST_F(HostileGpu, CursorNot64x64OrUnknown_IsLoggedAndIgnored)
{
    start();
    gpu->create_with_backing(5, 32, 32, ARGB);
    auto image = pattern(64 * 64 * 4, 3);
    gpu->create_with_backing(6, 64, 64, ARGB, image);
    ASSERT_EQ(gpu->transfer(6, Rect { 0, 0, 64, 64 }).type, uint32_t(CtrlType::OkNodata));

    EXPECT_EQ(gpu->update_cursor(0, 5, 10, 10, 1, 1), 0u);
    EXPECT_EQ(gpu->update_cursor(0, 77, 10, 10, 2, 2), 0u);
    expect_serving();
    EXPECT_EQ(gpu->update_cursor(0, 6, 10, 10, 3, 4), 0u);

    auto log = backend->log();
    EXPECT_NE(log.find("UPDATE_CURSOR: resource 5 is not 64x64"), std::string::npos) << log;
    EXPECT_NE(log.find("cursor command failed: ERR_INVALID_PARAMETER"), std::string::npos) << log;
    EXPECT_NE(log.find("cursor command failed: ERR_INVALID_RESOURCE_ID"), std::string::npos) << log;
    // The first cursor QEMU hears of is the good one.
    auto update = wait_for(GpuRequest::CursorUpdate);
    auto cursor = payload_as<display::qemu::GpuCursorUpdate>(update);
    EXPECT_EQ(cursor.hot_x, 3u);
    EXPECT_EQ(cursor.hot_y, 4u);
    EXPECT_TRUE(backend->alive());
}

// ---- commands we do not implement and short buffers -------------------------------------------

TEST_F(HostileGpu, UnknownAnd3dCommands_AnswerErrUnspec)
{
    start();
    for (uint32_t type :
        { 0x0u, 0x00FFu, 0x010Fu, 0x0999u, 0x0302u, 0x1100u, 0x1200u, 0xFFFFFFFFu }) {
        SCOPED_TRACE(type);
        EXPECT_ANSWER(gpu->simple(type, 64), CtrlType::ErrUnspec);
    }
    for (uint32_t type = uint32_t(CtrlType::CtxCreate);
         type <= uint32_t(CtrlType::ResourceUnmapBlob); ++type) {
        SCOPED_TRACE(type);
        EXPECT_ANSWER(gpu->simple(type, 64), CtrlType::ErrUnspec);
    }
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::ResourceAssignUuid), 32), CtrlType::ErrUnspec);
}

TEST_F(HostileGpu, CapsetsAndBlobs_AnswerAsQemusTwoDimensionalDevice)
{
    start();
    // No virgl: QEMU's 2D device does not know the capset commands (ERR_UNSPEC) and refuses
    // the blob commands when blobs are off (ERR_INVALID_PARAMETER).
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::GetCapsetInfo), 32), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::GetCapset), 32), CtrlType::ErrUnspec);
    EXPECT_ANSWER(
        gpu->simple(uint32_t(CtrlType::ResourceCreateBlob), 48), CtrlType::ErrInvalidParameter);
    EXPECT_ANSWER(
        gpu->simple(uint32_t(CtrlType::SetScanoutBlob), 96), CtrlType::ErrInvalidParameter);
}

TEST_F(HostileGpu, CommandsShorterThanTheirStruct_AnswerErrUnspec)
{
    start();
    gpu->create_with_backing(1, 64, 48, XRGB);
    const std::pair<CtrlType, size_t> sizes[] = {
        { CtrlType::ResourceCreate2d, 40 },
        { CtrlType::ResourceUnref, 32 },
        { CtrlType::SetScanout, 48 },
        { CtrlType::ResourceFlush, 48 },
        { CtrlType::TransferToHost2d, 56 },
        { CtrlType::ResourceAttachBacking, 32 },
        { CtrlType::ResourceDetachBacking, 32 },
        { CtrlType::GetEdid, 32 },
    };
    for (const auto& [type, size] : sizes) {
        SCOPED_TRACE(uint32_t(type));
        EXPECT_ANSWER(gpu->simple(uint32_t(type), size - 1), CtrlType::ErrUnspec);
        EXPECT_ANSWER(gpu->simple(uint32_t(type), sizeof(CtrlHdr)), CtrlType::ErrUnspec);
    }
    // Shorter than the header itself.
    EXPECT_ANSWER(
        gpu->simple(uint32_t(CtrlType::GetDisplayInfo), sizeof(CtrlHdr) - 1), CtrlType::ErrUnspec);
    EXPECT_ANSWER(gpu->simple(uint32_t(CtrlType::GetDisplayInfo), 1), CtrlType::ErrUnspec);
    EXPECT_TRUE(backend->alive());
}

// ---- what reaches QEMU's display socket -------------------------------------------------------

TEST_F(HostileGpu, XrgbFrame_ReachesQemuAsScanoutAndExactUpdates_ThenOnlyTheDamage)
{
    start();
    constexpr uint32_t width = 64, height = 48, stride = width * 4;
    auto frame = pattern(stride * height, 1);
    uint64_t backing = gpu->create_with_backing(1, width, height, XRGB, frame);
    ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(
        gpu->set_scanout(0, 1, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
    auto* peer = session->display();

    auto scanout = payload_as<display::qemu::GpuScanout>(wait_for(GpuRequest::Scanout));
    EXPECT_EQ(scanout.scanout_id, 0u);
    EXPECT_EQ(scanout.width, width);
    EXPECT_EQ(scanout.height, height);
    auto full = wait_for(GpuRequest::Update);
    auto update = payload_as<display::qemu::GpuUpdate>(full);
    EXPECT_EQ(update.scanout_id, 0u);
    EXPECT_EQ(update.x, 0u);
    EXPECT_EQ(update.y, 0u);
    EXPECT_EQ(update.width, width);
    EXPECT_EQ(update.height, height);
    ASSERT_EQ(full.payload.size(), sizeof(update) + frame.size());
    EXPECT_EQ(std::memcmp(full.payload.data() + sizeof(update), frame.data(), frame.size()), 0)
        << "pixels differ";

    // Updates are paced (~16 ms): let the full-frame ones go out, then damage a small rectangle.
    ASSERT_TRUE(peer->wait_quiet(std::chrono::milliseconds(100)));
    size_t updates_so_far = peer->count(request_id(GpuRequest::Update));
    const Rect damage { 10, 5, 7, 3 };
    auto fresh = pattern(stride * height, 200);
    for (uint32_t y = damage.y; y < damage.y + damage.height; ++y)
        session->ram().write(backing + y * stride + damage.x * 4,
            std::span(fresh).subspan(y * stride + damage.x * 4, damage.width * 4));
    ASSERT_EQ(gpu->transfer(1, damage, damage.y * stride + damage.x * 4).type,
        uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(gpu->flush(1, damage).type, uint32_t(CtrlType::OkNodata));

    auto small = peer->wait_for_nth(request_id(GpuRequest::Update), updates_so_far);
    ASSERT_TRUE(small.has_value());
    auto small_update = payload_as<display::qemu::GpuUpdate>(*small);
    EXPECT_EQ(small_update.x, damage.x);
    EXPECT_EQ(small_update.y, damage.y);
    EXPECT_EQ(small_update.width, damage.width);
    EXPECT_EQ(small_update.height, damage.height);
    ASSERT_EQ(
        small->payload.size(), sizeof(small_update) + size_t(damage.width) * damage.height * 4);
    for (uint32_t row = 0; row < damage.height; ++row) {
        const std::byte* got = small->payload.data() + sizeof(small_update)
            + row * damage.width * 4;
        const std::byte* expected = fresh.data() + (damage.y + row) * stride + damage.x * 4;
        EXPECT_EQ(std::memcmp(got, expected, damage.width * 4), 0) << "row " << row;
    }
}

TEST_F(HostileGpu, R8g8b8a8Frame_IsConvertedToX8r8g8b8ForQemu)
{
    start();
    constexpr uint32_t width = 64, height = 48, stride = width * 4;
    const Rect view { 8, 4, 32, 24 }; // the scanout shows part of the resource
    auto frame = pattern(stride * height, 2);
    gpu->create_with_backing(1, width, height, RGBA, frame);
    ASSERT_EQ(gpu->transfer(1, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(gpu->set_scanout(0, 1, view).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, width, height }).type, uint32_t(CtrlType::OkNodata));

    auto scanout = payload_as<display::qemu::GpuScanout>(wait_for(GpuRequest::Scanout));
    EXPECT_EQ(scanout.width, view.width);
    EXPECT_EQ(scanout.height, view.height);
    auto full = wait_for(GpuRequest::Update);
    auto update = payload_as<display::qemu::GpuUpdate>(full);
    EXPECT_EQ(update.x, 0u);
    EXPECT_EQ(update.y, 0u);
    EXPECT_EQ(update.width, view.width);
    EXPECT_EQ(update.height, view.height);
    ASSERT_EQ(full.payload.size(), sizeof(update) + size_t(view.width) * view.height * 4);
    for (uint32_t y = 0; y < view.height; ++y) {
        for (uint32_t x = 0; x < view.width; ++x) {
            uint32_t got;
            std::memcpy(&got, full.payload.data() + sizeof(update) + (y * view.width + x) * 4, 4);
            const std::byte* rgba = frame.data() + (view.y + y) * stride + (view.x + x) * 4;
            uint32_t expected = uint32_t(rgba[0]) << 16 | uint32_t(rgba[1]) << 8
                | uint32_t(rgba[2]);
            // x8r8g8b8: QEMU ignores the top byte.
            ASSERT_EQ(got & 0x00FFFFFF, expected) << "pixel " << x << "," << y;
        }
    }
}

TEST_F(HostileGpu, Cursor_UpdateMoveAndHide_ReachQemu)
{
    start();
    auto image = pattern(64 * 64 * 4, 4);
    gpu->create_with_backing(7, 64, 64, ARGB, image);
    ASSERT_EQ(gpu->transfer(7, Rect { 0, 0, 64, 64 }).type, uint32_t(CtrlType::OkNodata));

    EXPECT_EQ(gpu->update_cursor(0, 7, 100, 200, 5, 9), 0u);
    auto update = wait_for(GpuRequest::CursorUpdate);
    EXPECT_EQ(gpu->move_cursor(0, 300, 400), 0u);
    auto move = wait_for(GpuRequest::CursorPos);
    EXPECT_EQ(gpu->update_cursor(0, 0, 310, 410, 0, 0), 0u);
    auto hide = wait_for(GpuRequest::CursorPosHide);

    ASSERT_EQ(update.payload.size(), sizeof(display::qemu::GpuCursorUpdate));
    auto cursor = payload_as<display::qemu::GpuCursorUpdate>(update);
    EXPECT_EQ(cursor.pos.scanout_id, 0u);
    EXPECT_EQ(cursor.pos.x, 100u);
    EXPECT_EQ(cursor.pos.y, 200u);
    EXPECT_EQ(cursor.hot_x, 5u);
    EXPECT_EQ(cursor.hot_y, 9u);
    EXPECT_EQ(std::memcmp(cursor.data, image.data(), image.size()), 0) << "cursor image differs";
    auto pos = payload_as<display::qemu::GpuCursorPos>(move);
    EXPECT_EQ(pos.scanout_id, 0u);
    EXPECT_EQ(pos.x, 300u);
    EXPECT_EQ(pos.y, 400u);
    auto hidden = payload_as<display::qemu::GpuCursorPos>(hide);
    EXPECT_EQ(hidden.x, 310u);
    EXPECT_EQ(hidden.y, 410u);
}

TEST_F(HostileGpu, DisplayInfoAndEdid_ComeFromQemusDisplay)
{
    start({ "--output", "640x480" });
    session->display()->set_outputs({ { 1920, 1080 }, { 1024, 768 } });

    auto info = gpu->get_display_info();
    auto edid = gpu->get_edid(1);

    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    EXPECT_EQ(info->pmodes[0].enabled, 1u);
    EXPECT_EQ(info->pmodes[0].r.width, 1920u);
    EXPECT_EQ(info->pmodes[0].r.height, 1080u);
    EXPECT_EQ(info->pmodes[1].enabled, 1u);
    EXPECT_EQ(info->pmodes[1].r.width, 1024u);
    EXPECT_EQ(info->pmodes[1].r.height, 768u);
    EXPECT_EQ(info->pmodes[2].enabled, 0u);
    ASSERT_TRUE(edid.has_value());
    EXPECT_EQ(edid->hdr.type, uint32_t(CtrlType::OkEdid));
    auto expected = harness::DisplayPeer::fake_edid(1);
    ASSERT_EQ(edid->size, expected.size());
    EXPECT_EQ(std::memcmp(edid->edid, expected.data(), expected.size()), 0);
    // QEMU's display owns 16 scanouts: scanout 16 is refused without asking.
    auto refused = gpu->get_edid(16);
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(refused->hdr.type, uint32_t(CtrlType::ErrInvalidParameter));
    expect_serving();
}

// --outputs-from backend: our outputs answer although QEMU's display socket is there (and says
// otherwise); QEMU is not asked, and it still gets every output's frames.
TEST_F(HostileGpu, OutputsFromBackend_DisplayInfoAndEdidAreOurs_EveryOutputReachesQemu)
{
    start({ "--outputs-from", "backend", "--output", "1280x800", "--output", "1024x768", "--output",
        "800x600", "--output", "640x480" });
    session->display()->set_outputs({ { 1920, 1080 } });

    auto info = gpu->get_display_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    const std::pair<uint32_t, uint32_t> sizes[] = { { 1280, 800 }, { 1024, 768 }, { 800, 600 },
        { 640, 480 } };
    for (uint32_t i = 0; i < virtio_gpu::MAX_SCANOUTS; ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(info->pmodes[i].enabled, i < 4 ? 1u : 0u);
        EXPECT_EQ(info->pmodes[i].r.width, i < 4 ? sizes[i].first : 0u);
        EXPECT_EQ(info->pmodes[i].r.height, i < 4 ? sizes[i].second : 0u);
    }
    for (uint32_t i = 0; i < 4; ++i) {
        SCOPED_TRACE(i);
        auto edid = gpu->get_edid(i);
        ASSERT_TRUE(edid.has_value());
        ASSERT_EQ(edid->hdr.type, uint32_t(CtrlType::OkEdid));
        ASSERT_EQ(edid->size, 128u);
        // The preferred (first detailed) timing is the output's mode.
        const uint8_t* timing = edid->edid + 54;
        EXPECT_EQ(uint32_t(timing[2] | ((timing[4] & 0xf0) << 4)), sizes[i].first);
        EXPECT_EQ(uint32_t(timing[5] | ((timing[7] & 0xf0) << 4)), sizes[i].second);
    }
    // QEMU's scanouts beyond our outputs have no monitor; scanout 16 does not exist.
    auto beyond = gpu->get_edid(4);
    ASSERT_TRUE(beyond.has_value());
    EXPECT_EQ(beyond->hdr.type, uint32_t(CtrlType::ErrUnspec));
    auto refused = gpu->get_edid(16);
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(refused->hdr.type, uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(session->display()->count(request_id(GpuRequest::GetDisplayInfo)), 0u);
    EXPECT_EQ(session->display()->count(request_id(GpuRequest::GetEdid)), 0u);

    // Each output's frame goes to QEMU under its own scanout id, at its size.
    for (uint32_t i = 0; i < 4; ++i) {
        SCOPED_TRACE(i);
        auto [width, height] = sizes[i];
        auto pixels = pattern(size_t(width) * height * 4, i);
        for (size_t b = 3; b < pixels.size(); b += 4)
            pixels[b] = std::byte(0); // the X byte: what QEMU gets there is not the point
        gpu->create_with_backing(i + 1, width, height, XRGB, pixels);
        Rect all { 0, 0, width, height };
        EXPECT_ANSWER(gpu->transfer(i + 1, all), CtrlType::OkNodata);
        EXPECT_ANSWER(gpu->set_scanout(i, i + 1, all), CtrlType::OkNodata);
        EXPECT_ANSWER(gpu->flush(i + 1, all), CtrlType::OkNodata);
        auto scanout = session->display()->wait_for_matching(
            request_id(GpuRequest::Scanout), [&](const DisplayMessage& m) {
                return payload_as<display::qemu::GpuScanout>(m).scanout_id == i;
            });
        ASSERT_TRUE(scanout.has_value()) << "no SCANOUT for scanout " << i;
        auto s = payload_as<display::qemu::GpuScanout>(*scanout);
        EXPECT_EQ(s.width, width);
        EXPECT_EQ(s.height, height);
        auto update = session->display()->wait_for_matching(
            request_id(GpuRequest::Update), [&](const DisplayMessage& m) {
                return payload_as<display::qemu::GpuUpdate>(m).scanout_id == i;
            });
        ASSERT_TRUE(update.has_value()) << "no UPDATE for scanout " << i;
        auto u = payload_as<display::qemu::GpuUpdate>(*update);
        EXPECT_EQ(u.width, width);
        EXPECT_EQ(u.height, height);
        ASSERT_EQ(update->payload.size(), sizeof(u) + pixels.size());
        EXPECT_EQ(std::memcmp(update->payload.data() + sizeof(u), pixels.data(), pixels.size()), 0);
    }
}

TEST_F(HostileGpu, SilentQemuDisplay_FallsBackToOurOutputsAfterTheTimeout)
{
    start({ "--output", "640x480" });
    session->display()->set_silent(true);

    auto begin = std::chrono::steady_clock::now();
    auto info = gpu->get_display_info();
    auto waited = std::chrono::steady_clock::now() - begin;

    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    EXPECT_EQ(info->pmodes[0].r.width, 640u);
    EXPECT_EQ(info->pmodes[0].r.height, 480u);
    EXPECT_EQ(info->pmodes[1].enabled, 0u);
    EXPECT_GE(waited, std::chrono::milliseconds(900)) << "answered before QEMU's time was up";
    // GET_EDID falls back the same way: our EDID of that scanout, no monitor beyond our outputs.
    auto edid = gpu->get_edid(0);
    ASSERT_TRUE(edid.has_value());
    EXPECT_EQ(edid->hdr.type, uint32_t(CtrlType::OkEdid));
    EXPECT_EQ(edid->size, 128u);
    auto beyond = gpu->get_edid(3);
    ASSERT_TRUE(beyond.has_value());
    EXPECT_EQ(beyond->hdr.type, uint32_t(CtrlType::ErrUnspec));
    // Still serving (a command that needs no answer from QEMU: another query would wait again).
    EXPECT_EQ(gpu->create_2d(1, 64, 48).type, uint32_t(CtrlType::OkNodata));
    EXPECT_TRUE(backend->alive());
    EXPECT_NE(backend->log().find("QEMU did not answer"), std::string::npos);
}

} // namespace
} // namespace vgpu::integration
