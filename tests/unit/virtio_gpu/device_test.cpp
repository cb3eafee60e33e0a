// The virtio-gpu 2D device (virtio_gpu/device.h) driven in-process: commands laid out as the Linux
// driver lays them out go through real split queues in memfd guest RAM (harness::DriverQueue on
// the driver's side, virtio::SplitQueue on ours), and a fake display host records every call the
// device makes into the display layer. Answers are checked to the byte: response type and length,
// payloads, fences, the pixels copied and the rectangles handed to the display.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "harness/driver_queue.h"
#include "harness/guest_ram.h"
#include "virtio/guest_memory.h"
#include "virtio/split_queue.h"
#include "virtio_gpu/device.h"
#include "virtio_gpu/edid.h"

namespace vgpu::virtio_gpu {
namespace {

using harness::DriverQueue;
using harness::GuestRam;
using harness::UsedElement;

constexpr uint16_t queue_size = 16;
constexpr uint32_t XRGB = uint32_t(Format::B8G8R8X8Unorm);
constexpr uint32_t ARGB = uint32_t(Format::B8G8R8A8Unorm);
constexpr uint32_t OK_NODATA = uint32_t(CtrlType::OkNodata);

testing::AssertionResult same_rect(const Rect& actual, const Rect& expected)
{
    if (actual.x == expected.x && actual.y == expected.y && actual.width == expected.width
        && actual.height == expected.height)
        return testing::AssertionSuccess();
    return testing::AssertionFailure()
        << "rect " << actual.width << "x" << actual.height << "+" << actual.x << "+" << actual.y
        << ", expected " << expected.width << "x" << expected.height << "+" << expected.x << "+"
        << expected.y;
}

// Bytes that differ from their neighbours and do not repeat with any row length we use.
std::vector<std::byte> pattern(size_t size, uint32_t seed)
{
    std::vector<std::byte> out(size);
    for (size_t i = 0; i < size; ++i)
        out[i] = std::byte(uint8_t((i * 31 + (i >> 8) * 7 + seed) & 0xff));
    return out;
}

template <typename T>
std::vector<std::byte> bytes_of(const T& value)
{
    auto bytes = std::as_bytes(std::span(&value, 1));
    return { bytes.begin(), bytes.end() };
}

CtrlHdr header(
    CtrlType type, uint32_t flags = 0, uint64_t fence = 0, uint32_t ctx = 0, uint8_t ring = 0)
{
    CtrlHdr h {};
    h.type = uint32_t(type);
    h.flags = flags;
    h.fence_id = fence;
    h.ctx_id = ctx;
    h.ring_idx = ring;
    return h;
}

// Records what the device asks of the display layer. Queries forwarded to "QEMU" are parked until
// the test answers them (or never), unless answer_at_once is set.
class FakeDisplayHost final : public DisplayHost {
public:
    struct ScanoutSet {
        uint32_t scanout;
        std::optional<ScanoutSource> source;
    };
    struct Damage {
        uint32_t scanout;
        Rect rect;
    };
    struct CursorSet {
        uint32_t scanout;
        std::optional<CursorImage> image;
        uint32_t x, y;
    };
    struct CursorMove {
        uint32_t scanout, x, y;
    };

    Result<void> attach_qemu_display(Fd) override
    {
        qemu = true;
        return {};
    }
    void detach_qemu_display() override
    {
        qemu = false;
        ++detach_calls;
    }
    bool has_qemu_display() const override { return qemu; }
    void query_display_info(std::function<void(std::optional<RespDisplayInfo>)> done) override
    {
        ++display_info_queries;
        if (answer_at_once) {
            done(display_answer);
            return;
        }
        pending_display_info.push_back(std::move(done));
    }
    void query_edid(uint32_t scanout, std::function<void(std::optional<RespEdid>)> done) override
    {
        edid_queries.push_back(scanout);
        pending_edid.push_back(std::move(done));
    }
    void scanout_set(uint32_t scanout, std::optional<ScanoutSource> source) override
    {
        scanout_sets.push_back({ scanout, std::move(source) });
    }
    void scanout_damaged(uint32_t scanout, Rect damage) override
    {
        damages.push_back({ scanout, damage });
    }
    void cursor_set(
        uint32_t scanout, std::optional<CursorImage> image, uint32_t x, uint32_t y) override
    {
        cursor_sets.push_back({ scanout, std::move(image), x, y });
    }
    void cursor_move(uint32_t scanout, uint32_t x, uint32_t y) override
    {
        cursor_moves.push_back({ scanout, x, y });
    }
    bool pixels_will_change(const PixelStorage& pixels) override
    {
        // What the pixels held when the device announced the change: the first pixel.
        uint32_t first = 0;
        std::memcpy(&first, pixels.data(), sizeof(first));
        pixel_changes.push_back({ &pixels, first });
        return checksum_transfers;
    }
    void when_released(std::shared_ptr<const PixelStorage> pixels,
        std::chrono::milliseconds timeout, std::function<void(bool)> done,
        PixelStorage::Readers which) override
    {
        releases.push_back({ std::move(pixels), timeout, std::move(done), which });
    }
    struct Release {
        std::shared_ptr<const PixelStorage> pixels;
        std::chrono::milliseconds timeout;
        std::function<void(bool)> done;
        PixelStorage::Readers which;
    };
    std::vector<Release> releases;
    bool checksum_transfers = false;
    struct PixelChange {
        const PixelStorage* pixels;
        uint32_t first_pixel_before;
    };
    std::vector<PixelChange> pixel_changes;

    bool qemu = false;
    bool answer_at_once = false;
    std::optional<RespDisplayInfo> display_answer;
    int detach_calls = 0;
    int display_info_queries = 0;
    std::vector<uint32_t> edid_queries;
    std::vector<std::function<void(std::optional<RespDisplayInfo>)>> pending_display_info;
    std::vector<std::function<void(std::optional<RespEdid>)>> pending_edid;
    std::vector<ScanoutSet> scanout_sets;
    std::vector<Damage> damages;
    std::vector<CursorSet> cursor_sets;
    std::vector<CursorMove> cursor_moves;
};

RespDisplayInfo display_info_of(std::vector<std::pair<uint32_t, uint32_t>> modes)
{
    RespDisplayInfo info {};
    info.hdr.type = uint32_t(CtrlType::OkDisplayInfo);
    for (size_t i = 0; i < modes.size(); ++i) {
        info.pmodes[i].r = Rect { 0, 0, modes[i].first, modes[i].second };
        info.pmodes[i].enabled = 1;
    }
    return info;
}

class GpuDeviceTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        for (const auto& region : ram.regions())
            ASSERT_TRUE(memory.add_region(region, ram.fd()).has_value());
        start(control_queue, control_driver);
        start(cursor_queue, cursor_driver);
        make_device(DeviceOptions {});
    }

    void start(virtio::SplitQueue& queue, DriverQueue& driver)
    {
        ASSERT_TRUE(queue.set_size(queue_size).has_value());
        ASSERT_TRUE(queue
                        .set_addresses(ram.frontend_va(driver.desc_gpa()),
                            ram.frontend_va(driver.avail_gpa()), ram.frontend_va(driver.used_gpa()))
                        .has_value());
        auto call = driver.call().dup();
        ASSERT_TRUE(call.has_value());
        queue.set_call(call.release_value());
        ASSERT_TRUE(queue.start(memory).has_value());
    }

    void make_device(DeviceOptions options)
    {
        device = std::make_unique<Device>(std::move(options));
        device->set_display_host(&host);
    }

    // ---- the control queue ----

    struct Submitted {
        uint16_t head;
        uint64_t response_gpa;
    };
    // Puts a command in guest RAM behind a writable response buffer (filled with 0xee so that
    // unwritten bytes show); the device does not run yet.
    Submitted queue_bytes(
        std::span<const std::byte> command, uint32_t response_size = sizeof(CtrlHdr))
    {
        uint64_t request = ram.alloc(command.size());
        ram.write(request, command);
        uint64_t response = ram.alloc(response_size);
        std::memset(ram.host(response), 0xee, response_size);
        uint16_t head = control_driver.add(
            { { request, uint32_t(command.size()), false }, { response, response_size, true } });
        return { head, response };
    }
    template <typename T>
    Submitted queue(const T& command, uint32_t response_size = sizeof(CtrlHdr))
    {
        return queue_bytes(bytes_of(command), response_size);
    }
    void run_control() { device->process_queue(control_queue, memory); }
    // The next used element, which must belong to `submitted`; returns the bytes written.
    std::vector<std::byte> collect(const Submitted& submitted)
    {
        auto used = control_driver.wait_used(std::chrono::milliseconds(0));
        if (!used) {
            ADD_FAILURE() << "no used entry for the command at head " << submitted.head;
            return {};
        }
        EXPECT_EQ(used->id, submitted.head) << "completed out of order";
        std::vector<std::byte> response(used->length);
        ram.read(submitted.response_gpa, response);
        return response;
    }
    std::vector<std::byte> round_trip_bytes(
        std::span<const std::byte> command, uint32_t response_size = sizeof(CtrlHdr))
    {
        auto submitted = queue_bytes(command, response_size);
        run_control();
        return collect(submitted);
    }
    // Sends a command and returns its response header; a response of the wrong length fails.
    template <typename T>
    CtrlHdr call(const T& command)
    {
        auto response = round_trip_bytes(bytes_of(command));
        CtrlHdr h {};
        EXPECT_EQ(response.size(), sizeof(CtrlHdr));
        std::memcpy(&h, response.data(), std::min(response.size(), sizeof(h)));
        return h;
    }

    // ---- commands, built as the Linux driver builds them ----

    uint32_t create_2d(uint32_t id, uint32_t width, uint32_t height, uint32_t format = XRGB)
    {
        ResourceCreate2d c {};
        c.hdr = header(CtrlType::ResourceCreate2d);
        c.resource_id = id;
        c.format = format;
        c.width = width;
        c.height = height;
        return call(c).type;
    }
    uint32_t attach(uint32_t id, const std::vector<MemEntry>& entries, uint32_t nr_entries)
    {
        ResourceAttachBacking c {};
        c.hdr = header(CtrlType::ResourceAttachBacking);
        c.resource_id = id;
        c.nr_entries = nr_entries;
        auto command = bytes_of(c);
        for (const auto& e : entries) {
            auto b = bytes_of(e);
            command.insert(command.end(), b.begin(), b.end());
        }
        auto response = round_trip_bytes(command);
        CtrlHdr h {};
        EXPECT_EQ(response.size(), sizeof(CtrlHdr));
        std::memcpy(&h, response.data(), std::min(response.size(), sizeof(h)));
        return h.type;
    }
    uint32_t attach(uint32_t id, const std::vector<MemEntry>& entries)
    {
        return attach(id, entries, uint32_t(entries.size()));
    }
    uint32_t detach(uint32_t id)
    {
        ResourceDetachBacking c {};
        c.hdr = header(CtrlType::ResourceDetachBacking);
        c.resource_id = id;
        return call(c).type;
    }
    uint32_t transfer(uint32_t id, Rect r, uint64_t offset = 0)
    {
        TransferToHost2d c {};
        c.hdr = header(CtrlType::TransferToHost2d);
        c.r = r;
        c.offset = offset;
        c.resource_id = id;
        return call(c).type;
    }
    uint32_t set_scanout(uint32_t scanout, uint32_t id, Rect r)
    {
        SetScanout c {};
        c.hdr = header(CtrlType::SetScanout);
        c.r = r;
        c.scanout_id = scanout;
        c.resource_id = id;
        return call(c).type;
    }
    uint32_t flush(uint32_t id, Rect r)
    {
        ResourceFlush c {};
        c.hdr = header(CtrlType::ResourceFlush);
        c.r = r;
        c.resource_id = id;
        return call(c).type;
    }
    uint32_t unref(uint32_t id)
    {
        ResourceUnref c {};
        c.hdr = header(CtrlType::ResourceUnref);
        c.resource_id = id;
        return call(c).type;
    }
    // A guest buffer holding `bytes`; returns its GPA.
    uint64_t guest_buffer(std::span<const std::byte> bytes, uint64_t align = 64)
    {
        uint64_t gpa = ram.alloc(bytes.size(), align);
        ram.write(gpa, bytes);
        return gpa;
    }
    // Creates a resource whose single-entry backing holds `content` (width * height * 4 bytes).
    void create_with_backing(uint32_t id, uint32_t width, uint32_t height,
        std::span<const std::byte> content, uint32_t format = XRGB)
    {
        ASSERT_EQ(create_2d(id, width, height, format), OK_NODATA);
        uint64_t gpa = guest_buffer(content);
        ASSERT_EQ(attach(id, { MemEntry { gpa, uint32_t(content.size()), 0 } }), OK_NODATA);
    }
    // The pixels of the resource the last SET_SCANOUT showed (the display's view of them).
    std::span<const std::byte> shown_pixels() const
    {
        const auto& source = host.scanout_sets.back().source;
        return { source->pixels->data(), size_t(source->stride) * source->resource_height };
    }

    // ---- the cursor queue ----

    void cursor_command(const UpdateCursor& command)
    {
        auto bytes = bytes_of(command);
        uint64_t gpa = guest_buffer(bytes);
        uint16_t head = cursor_driver.add({ { gpa, uint32_t(bytes.size()), false } });
        device->process_queue(cursor_queue, memory);
        auto used = cursor_driver.wait_used(std::chrono::milliseconds(0));
        ASSERT_TRUE(used.has_value());
        EXPECT_EQ(used->id, head);
        EXPECT_EQ(used->length, 0u) << "the cursor queue has no response";
    }
    void update_cursor(
        uint32_t scanout, uint32_t id, uint32_t x, uint32_t y, uint32_t hot_x, uint32_t hot_y)
    {
        UpdateCursor c {};
        c.hdr = header(CtrlType::UpdateCursor);
        c.pos = { scanout, x, y, 0 };
        c.resource_id = id;
        c.hot_x = hot_x;
        c.hot_y = hot_y;
        cursor_command(c);
    }
    void move_cursor(uint32_t scanout, uint32_t x, uint32_t y)
    {
        UpdateCursor c {};
        c.hdr = header(CtrlType::MoveCursor);
        c.pos = { scanout, x, y, 0 };
        cursor_command(c);
    }

    GuestRam ram { 8 << 20, 1 << 20 };
    virtio::GuestMemory memory;
    DriverQueue control_driver { ram, queue_size };
    DriverQueue cursor_driver { ram, queue_size };
    virtio::SplitQueue control_queue { uint16_t(Device::CONTROL_QUEUE) };
    virtio::SplitQueue cursor_queue { uint16_t(Device::CURSOR_QUEUE) };
    FakeDisplayHost host;
    std::unique_ptr<Device> device;
};

// ---- configuration space ----------------------------------------------------------------------

Config read_whole_config(const Device& device)
{
    Config config {};
    EXPECT_TRUE(device.read_config(0, std::as_writable_bytes(std::span(&config, 1))).has_value());
    return config;
}

TEST(GpuDeviceConfig, NumScanouts_IsTheNumberOfOutputs)
{
    Device device(DeviceOptions { { { 1024, 768 }, { 800, 600 }, { 640, 480 } } });

    Config config = read_whole_config(device);

    EXPECT_EQ(config.num_scanouts, 3u);
    EXPECT_EQ(config.num_capsets, 0u);
    EXPECT_EQ(config.events_read, 0u);
    // RESOURCE_BLOB is offered for frontends that pass it through (QEMU does not).
    EXPECT_EQ(device.device_features(), (uint64_t(1) << F_EDID) | (uint64_t(1) << F_RESOURCE_BLOB));
}

TEST(GpuDeviceConfig, DisplayEvent_IsRaisedAndClearedThroughEventsClear)
{
    Device device(DeviceOptions {});
    int changes = 0;
    device.set_config_changed_callback([&] { ++changes; });

    device.raise_display_event();
    EXPECT_EQ(read_whole_config(device).events_read, EVENT_DISPLAY);
    uint32_t clear = EVENT_DISPLAY;
    auto result = device.write_config(
        offsetof(Config, events_clear), std::as_bytes(std::span(&clear, 1)));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(read_whole_config(device).events_read, 0u);
    EXPECT_EQ(changes, 1);
}

TEST(GpuDeviceConfig, WriteOutsideEventsClear_Fails)
{
    Device device(DeviceOptions {});
    uint32_t value = 16;

    auto result = device.write_config(
        offsetof(Config, num_scanouts), std::as_bytes(std::span(&value, 1)));

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(read_whole_config(device).num_scanouts, 1u);
}

// ---- RESOURCE_CREATE_2D and host memory -------------------------------------------------------

// What a W x H resource without backing is accounted: pixels, CRC cache, bookkeeping.
uint64_t cost(uint32_t width, uint32_t height)
{
    return PixelStorage::host_cost(width, height, width * 4) + ResourceTable::resource_overhead;
}

TEST_F(GpuDeviceTest, ResourceCreate2d_Valid_AnswersOkNodataAndAccountsItsPixels)
{
    EXPECT_EQ(create_2d(1, 64, 48), OK_NODATA);

    EXPECT_EQ(device->resources().count(), 1u);
    EXPECT_EQ(device->resources().host_bytes(), cost(64, 48));
    EXPECT_GE(cost(64, 48), 64u * 48u * 4u + 512u);
    EXPECT_EQ(device->stats().control_commands, 1u);
    EXPECT_EQ(device->stats().error_responses, 0u);
    EXPECT_TRUE(host.scanout_sets.empty());
}

TEST_F(GpuDeviceTest, ResourceCreate2d_AllEightFormats_AreCreatedAndShownWithTheirPixmanFormat)
{
    // Byte order in memory -> the 32-bit value on a little-endian host, in pixman's terms.
    const std::array<std::pair<uint32_t, pixman_format_code_t>, 8> formats { {
        { 1, PIXMAN_a8r8g8b8 }, // B8G8R8A8
        { 2, PIXMAN_x8r8g8b8 }, // B8G8R8X8
        { 3, PIXMAN_b8g8r8a8 }, // A8R8G8B8
        { 4, PIXMAN_b8g8r8x8 }, // X8R8G8B8
        { 67, PIXMAN_a8b8g8r8 }, // R8G8B8A8
        { 68, PIXMAN_r8g8b8x8 }, // X8B8G8R8
        { 121, PIXMAN_r8g8b8a8 }, // A8B8G8R8
        { 134, PIXMAN_x8b8g8r8 }, // R8G8B8X8
    } };
    auto content = pattern(16 * 16 * 4, 0);
    for (uint32_t i = 0; i < formats.size(); ++i) {
        SCOPED_TRACE(formats[i].first);
        create_with_backing(10 + i, 16, 16, content, formats[i].first);
        ASSERT_EQ(set_scanout(0, 10 + i, Rect { 0, 0, 16, 16 }), OK_NODATA);
        const auto& source = host.scanout_sets.back().source;
        ASSERT_TRUE(source.has_value());
        EXPECT_EQ(uint32_t(source->format.format), formats[i].first);
        EXPECT_EQ(source->format.pixman, formats[i].second);
    }
    EXPECT_EQ(device->resources().count(), 8u);
}

TEST_F(GpuDeviceTest, ResourceCreate2d_BadIdsFormatsAndSizes_AnswerTheirErrors)
{
    ASSERT_EQ(create_2d(1, 64, 48), OK_NODATA);

    EXPECT_EQ(create_2d(0, 64, 48), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(create_2d(1, 64, 48), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(create_2d(2, 64, 48, 0), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(create_2d(2, 64, 48, 5), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(create_2d(2, 64, 48, 200), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(create_2d(2, 0, 48), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(create_2d(2, 64, 0), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(create_2d(2, 0xFFFFFFFF, 0xFFFFFFFF), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(create_2d(2, 65536, 65536), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(device->resources().count(), 1u);
    EXPECT_EQ(device->resources().host_bytes(), cost(64, 48));
    EXPECT_EQ(device->stats().error_responses, 9u);
}

TEST_F(GpuDeviceTest, HostMemoryLimit_IsExclusiveAndUnrefReleasesMemory)
{
    make_device(DeviceOptions { { OutputMode {} }, 2 * cost(64, 64) });

    EXPECT_EQ(create_2d(1, 64, 64), OK_NODATA);
    // 64x64 twice would be exactly the limit: QEMU's check is `total < max_hostmem`.
    EXPECT_EQ(create_2d(2, 64, 64), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(create_2d(3, 64, 63), OK_NODATA);
    EXPECT_EQ(device->resources().host_bytes(), cost(64, 64) + cost(64, 63));
    EXPECT_EQ(unref(1), OK_NODATA);

    EXPECT_EQ(device->resources().host_bytes(), cost(64, 63));
    EXPECT_EQ(create_2d(2, 64, 64), OK_NODATA);
    EXPECT_EQ(device->resources().count(), 2u);
}

TEST_F(GpuDeviceTest, BackingEntries_AreAccounted_PastTheLimitErrOutOfMemory_DetachGivesThemBack)
{
    // Room for the resource and 1000 entries, not for 16384 (16384 x 24 bytes).
    make_device(DeviceOptions {
        { OutputMode {} }, cost(64, 64) + 1000 * ResourceTable::backing_entry_cost + 1 });
    ASSERT_EQ(create_2d(1, 64, 64), OK_NODATA);
    uint64_t gpa = ram.alloc(4096);
    std::vector<MemEntry> many(16384, MemEntry { gpa, 1, 0 });
    std::vector<MemEntry> some(1000, MemEntry { gpa, 16, 0 });

    EXPECT_EQ(attach(1, many), uint32_t(CtrlType::ErrOutOfMemory));
    EXPECT_EQ(device->resources().host_bytes(), cost(64, 64));
    EXPECT_EQ(attach(1, some), OK_NODATA);
    EXPECT_EQ(
        device->resources().host_bytes(), cost(64, 64) + 1000 * ResourceTable::backing_entry_cost);
    EXPECT_EQ(device->resources().backing_entries(), 1000u);
    EXPECT_EQ(detach(1), OK_NODATA);
    EXPECT_EQ(device->resources().host_bytes(), cost(64, 64));
    EXPECT_EQ(device->resources().backing_entries(), 0u);
    EXPECT_EQ(attach(1, some), OK_NODATA);
    EXPECT_EQ(unref(1), OK_NODATA);
    EXPECT_EQ(device->resources().host_bytes(), 0u);
}

TEST_F(GpuDeviceTest, TinyResources_AreBoundedByTheLimit_NotJustByTheirPixels)
{
    // 1x1 resources have 4 bytes of pixels each: counted by pixels alone, 4 MiB would allow a
    // million of them.
    make_device(DeviceOptions { { OutputMode {} }, 4 << 20 });
    uint32_t created = 0;
    while (created < 1000000 && create_2d(created + 1, 1, 1) == OK_NODATA)
        ++created;
    EXPECT_GE(created, 100u);
    EXPECT_LE(created, device->resources().max_resources());
    EXPECT_LT(device->resources().host_bytes(), uint64_t(4) << 20);
    EXPECT_EQ(device->resources().host_bytes(), created * cost(1, 1));
    EXPECT_EQ(unref(1), OK_NODATA);
    EXPECT_EQ(create_2d(created + 1, 1, 1), OK_NODATA);
}

// ---- ATTACH_BACKING and TRANSFER_TO_HOST_2D ---------------------------------------------------

TEST_F(GpuDeviceTest, Transfer_WholeResource_CopiesTheBackingExactly)
{
    auto content = pattern(64 * 48 * 4, 1);
    create_with_backing(1, 64, 48, content);

    EXPECT_EQ(transfer(1, Rect { 0, 0, 64, 48 }), OK_NODATA);

    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 64, 48 }), OK_NODATA);
    auto shown = shown_pixels();
    ASSERT_EQ(shown.size(), content.size());
    EXPECT_TRUE(std::equal(shown.begin(), shown.end(), content.begin()));
    EXPECT_EQ(device->stats().transfers, 1u);
    EXPECT_EQ(device->stats().bytes_transferred, content.size());
}

TEST_F(GpuDeviceTest, Transfer_AnnouncesTheChangeBeforeOverwritingThePixels)
{
    // A sink that still has to read the old frame (a pending CRC) is told before the copy.
    auto first = pattern(16 * 16 * 4, 5), second = pattern(16 * 16 * 4, 6);
    uint32_t first_pixel, second_pixel;
    std::memcpy(&first_pixel, first.data(), 4);
    std::memcpy(&second_pixel, second.data(), 4);
    ASSERT_NE(first_pixel, second_pixel);
    ASSERT_EQ(create_2d(1, 16, 16), OK_NODATA);
    uint64_t gpa = guest_buffer(first);
    ASSERT_EQ(attach(1, { MemEntry { gpa, uint32_t(first.size()), 0 } }), OK_NODATA);
    ASSERT_EQ(transfer(1, Rect { 0, 0, 16, 16 }), OK_NODATA);
    ram.write(gpa, second);

    ASSERT_EQ(transfer(1, Rect { 0, 4, 8, 8 }, 4 * 64), OK_NODATA);

    ASSERT_EQ(host.pixel_changes.size(), 2u);
    EXPECT_EQ(host.pixel_changes[0].first_pixel_before, 0u); // a new resource is black
    EXPECT_EQ(host.pixel_changes[1].first_pixel_before, first_pixel);
}

TEST_F(GpuDeviceTest, Transfer_ChecksumsOnTheWayOnlyWhenTheDisplayAsks)
{
    // 256 pixels wide: two whole 128-pixel tiles per row.
    auto content = pattern(256 * 16 * 4, 7);
    ASSERT_EQ(create_2d(1, 256, 16), OK_NODATA);
    uint64_t gpa = guest_buffer(content);
    ASSERT_EQ(attach(1, { MemEntry { gpa, uint32_t(content.size()), 0 } }), OK_NODATA);
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 256, 16 }), OK_NODATA);
    const auto& pixels = *host.scanout_sets.back().source->pixels;

    ASSERT_EQ(transfer(1, Rect { 0, 0, 256, 16 }), OK_NODATA);
    EXPECT_EQ(pixels.pixels_checksummed(), 0u);
    host.checksum_transfers = true;
    ASSERT_EQ(transfer(1, Rect { 0, 0, 256, 16 }), OK_NODATA);

    EXPECT_EQ(pixels.pixels_checksummed(), 256u * 16u);
    auto shown = shown_pixels();
    EXPECT_TRUE(std::equal(shown.begin(), shown.end(), content.begin()));
}

TEST_F(GpuDeviceTest, Transfer_BackingOfDiscontiguousEntries_CopiesAcrossEntryBoundaries)
{
    // 16x16 resource, 1024 bytes: 100 + 700 bytes in low memory with a gap between them (entry
    // ends that split pixels and rows), the last 224 bytes in the high region above 4 GiB.
    auto content = pattern(16 * 16 * 4, 2);
    ASSERT_EQ(create_2d(1, 16, 16), OK_NODATA);
    uint64_t first = guest_buffer(std::span(content).subspan(0, 100));
    ram.alloc(4096); // the gap
    uint64_t second = guest_buffer(std::span(content).subspan(100, 700));
    uint64_t third = GuestRam::high_base + 0x1000;
    ram.write(third, std::span(content).subspan(800, 224));
    ASSERT_EQ(attach(1, { { first, 100, 0 }, { second, 700, 0 }, { third, 224, 0 } }), OK_NODATA);

    EXPECT_EQ(transfer(1, Rect { 0, 0, 16, 16 }), OK_NODATA);

    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 16, 16 }), OK_NODATA);
    auto shown = shown_pixels();
    ASSERT_EQ(shown.size(), content.size());
    EXPECT_TRUE(std::equal(shown.begin(), shown.end(), content.begin()));
}

TEST_F(GpuDeviceTest, Transfer_SubRectangleAtItsOwnOffset_CopiesOnlyThatRectangle)
{
    constexpr uint32_t stride = 32 * 4;
    auto content = pattern(stride * 16, 3);
    create_with_backing(1, 32, 16, content);
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 32, 16 }), OK_NODATA);
    const Rect r { 3, 2, 5, 4 };

    // The Linux driver's offset for a rectangle: where its first pixel lies in the backing.
    EXPECT_EQ(transfer(1, r, uint64_t(r.y) * stride + r.x * 4), OK_NODATA);

    auto shown = shown_pixels();
    for (uint32_t y = 0; y < 16; ++y) {
        for (uint32_t x = 0; x < 32; ++x) {
            bool inside = x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
            for (uint32_t b = 0; b < 4; ++b) {
                size_t at = size_t(y) * stride + x * 4 + b;
                ASSERT_EQ(shown[at], inside ? content[at] : std::byte { 0 })
                    << "pixel " << x << "," << y;
            }
        }
    }
}

TEST_F(GpuDeviceTest, Transfer_OffsetIsWhereRowZeroStarts_IndependentOfTheRectangle)
{
    constexpr uint32_t stride = 32 * 4;
    auto content = pattern(stride * 16, 4);
    create_with_backing(1, 32, 16, content);
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 32, 16 }), OK_NODATA);

    // Row h of the rectangle comes from offset + h * stride, wherever the rectangle is.
    EXPECT_EQ(transfer(1, Rect { 3, 2, 5, 4 }, 8), OK_NODATA);

    auto shown = shown_pixels();
    for (uint32_t h = 0; h < 4; ++h)
        for (uint32_t k = 0; k < 5 * 4; ++k)
            ASSERT_EQ(
                shown[size_t(2 + h) * stride + 3 * 4 + k], content[8 + size_t(h) * stride + k])
                << "row " << h << " byte " << k;
    EXPECT_EQ(shown[size_t(2) * stride + 2 * 4], std::byte { 0 }); // left of the rectangle
    EXPECT_EQ(shown[size_t(2) * stride + 8 * 4], std::byte { 0 }); // right of it
}

TEST_F(GpuDeviceTest, Transfer_PastTheEndOfTheBacking_CopiesWhatIsThereAndAnswersOk)
{
    constexpr uint32_t stride = 32 * 4;
    auto first = pattern(stride * 16, 5);
    auto second = pattern(stride * 16, 99);
    ASSERT_EQ(create_2d(1, 32, 16), OK_NODATA);
    uint64_t gpa = guest_buffer(first);
    ASSERT_EQ(attach(1, { { gpa, stride * 16, 0 } }), OK_NODATA);
    ASSERT_EQ(transfer(1, Rect { 0, 0, 32, 16 }), OK_NODATA);
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 32, 16 }), OK_NODATA);
    ram.write(gpa, second);

    // As QEMU's iov_to_buf: bytes beyond the backing are not copied, and there is no error.
    EXPECT_EQ(transfer(1, Rect { 0, 0, 32, 16 }, stride * 16), OK_NODATA);
    EXPECT_EQ(transfer(1, Rect { 3, 2, 5, 4 }, 0xFFFFFFFFFFFFFF00ull), OK_NODATA);
    auto shown = shown_pixels();
    EXPECT_TRUE(std::equal(shown.begin(), shown.end(), first.begin())) << "nothing may be copied";
    // Row 0 starting 64 bytes before the end: its first 16 pixels are copied, the rest stay.
    EXPECT_EQ(transfer(1, Rect { 0, 0, 32, 1 }, stride * 16 - 64), OK_NODATA);

    for (size_t i = 0; i < stride; ++i)
        ASSERT_EQ(shown[i], i < 64 ? second[stride * 16 - 64 + i] : first[i]) << "byte " << i;
    EXPECT_TRUE(std::equal(shown.begin() + stride, shown.end(), first.begin() + stride));
}

TEST_F(GpuDeviceTest, Transfer_WithoutBacking_AnswersErrUnspec)
{
    auto content = pattern(64 * 48 * 4, 6);
    create_with_backing(1, 64, 48, content);
    ASSERT_EQ(create_2d(2, 64, 48), OK_NODATA);

    EXPECT_EQ(transfer(2, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(detach(1), OK_NODATA);
    EXPECT_EQ(transfer(1, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(detach(1), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(transfer(3, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrInvalidResourceId));
}

TEST_F(GpuDeviceTest, Transfer_RectangleOutsideTheResource_AnswersErrInvalidParameter)
{
    auto content = pattern(64 * 48 * 4, 7);
    create_with_backing(1, 64, 48, content);

    EXPECT_EQ(transfer(1, Rect { 0, 0, 65, 48 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(transfer(1, Rect { 0, 1, 64, 48 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(transfer(1, Rect { 65, 0, 0, 0 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(transfer(1, Rect { 0xFFFFFFF0, 0, 0x20, 1 }),
        uint32_t(CtrlType::ErrInvalidParameter)); // x + w wraps
    EXPECT_EQ(transfer(1, Rect { 64, 48, 0, 0 }), OK_NODATA); // empty, at the corner
}

TEST_F(GpuDeviceTest, AttachBacking_HostileEntries_AnswerAsQemu)
{
    ASSERT_EQ(create_2d(1, 16, 16), OK_NODATA);
    uint64_t gpa = ram.alloc(1024);

    EXPECT_EQ(attach(1, { { 0x10000000, 1024, 0 } }), uint32_t(CtrlType::ErrUnspec)); // outside RAM
    EXPECT_EQ(attach(1, { { ram.low_size() - 512, 1024, 0 } }),
        uint32_t(CtrlType::ErrUnspec)); // runs off the end
    EXPECT_EQ(attach(1, { { gpa, 512, 0 }, { gpa, 0, 0 } }),
        uint32_t(CtrlType::ErrUnspec)); // empty entry
    EXPECT_EQ(attach(1, { { gpa, 1024, 0 } }, 2),
        uint32_t(CtrlType::ErrUnspec)); // more than the buffer holds
    EXPECT_EQ(attach(1, {}, MAX_BACKING_ENTRIES + 1), uint32_t(CtrlType::ErrUnspec));
    // QEMU looks the resource up first.
    EXPECT_EQ(attach(7, {}, MAX_BACKING_ENTRIES + 1), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(attach(0, { { gpa, 1024, 0 } }), uint32_t(CtrlType::ErrInvalidResourceId));
    // None of the failures attached anything.
    EXPECT_EQ(transfer(1, Rect { 0, 0, 16, 16 }), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(attach(1, { { gpa, 1024, 0 } }), OK_NODATA);
    EXPECT_EQ(attach(1, { { gpa, 1024, 0 } }), uint32_t(CtrlType::ErrUnspec)); // twice
}

TEST_F(GpuDeviceTest, AttachBacking_ZeroEntries_SucceedsButLeavesNoBacking)
{
    ASSERT_EQ(create_2d(1, 16, 16), OK_NODATA);

    EXPECT_EQ(attach(1, {}), OK_NODATA);

    EXPECT_EQ(transfer(1, Rect { 0, 0, 16, 16 }), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(set_scanout(0, 1, Rect { 0, 0, 16, 16 }), uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(attach(1, { { ram.alloc(1024), 1024, 0 } }), OK_NODATA);
}

TEST_F(GpuDeviceTest, AttachBacking_OverlappingEntries_AreAcceptedAndReadTwice)
{
    auto content = pattern(16 * 16 * 4, 8);
    uint64_t gpa = guest_buffer(content);
    ASSERT_EQ(create_2d(1, 16, 32), OK_NODATA);

    EXPECT_EQ(attach(1, { { gpa, 1024, 0 }, { gpa, 1024, 0 } }), OK_NODATA);
    EXPECT_EQ(transfer(1, Rect { 0, 0, 16, 32 }), OK_NODATA);

    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 16, 32 }), OK_NODATA);
    auto shown = shown_pixels();
    EXPECT_TRUE(std::equal(shown.begin(), shown.begin() + 1024, content.begin()));
    EXPECT_TRUE(std::equal(shown.begin() + 1024, shown.end(), content.begin()));
}

// ---- SET_SCANOUT, RESOURCE_FLUSH, RESOURCE_UNREF ----------------------------------------------

TEST_F(GpuDeviceTest, SetScanoutThenFlush_ShowsTheRectangleAndReportsDamageInScanoutCoordinates)
{
    auto content = pattern(64 * 48 * 4, 9);
    create_with_backing(1, 64, 48, content);
    ASSERT_EQ(transfer(1, Rect { 0, 0, 64, 48 }), OK_NODATA);

    EXPECT_EQ(set_scanout(0, 1, Rect { 8, 4, 32, 24 }), OK_NODATA);

    ASSERT_EQ(host.scanout_sets.size(), 1u);
    EXPECT_EQ(host.scanout_sets[0].scanout, 0u);
    const auto& source = host.scanout_sets[0].source;
    ASSERT_TRUE(source.has_value());
    EXPECT_EQ(source->resource.value(), 1u);
    EXPECT_TRUE(same_rect(source->rect, Rect { 8, 4, 32, 24 }));
    EXPECT_EQ(source->resource_width, 64u);
    EXPECT_EQ(source->resource_height, 48u);
    EXPECT_EQ(source->stride, 64u * 4);
    EXPECT_EQ(source->format.format, Format::B8G8R8X8Unorm);
    // pixel(0, 0) is the scanout's top-left corner inside the resource.
    EXPECT_EQ(std::memcmp(source->pixel(0, 0), content.data() + 4 * 64 * 4 + 8 * 4, 4), 0);
    EXPECT_EQ(device->stats().scanout_changes, 1u);

    EXPECT_EQ(flush(1, Rect { 0, 0, 64, 48 }), OK_NODATA);
    EXPECT_EQ(flush(1, Rect { 0, 0, 16, 8 }), OK_NODATA);
    EXPECT_EQ(flush(1, Rect { 30, 20, 20, 10 }), OK_NODATA);
    EXPECT_EQ(flush(1, Rect { 0, 0, 8, 4 }), OK_NODATA); // not on the scanout: no damage

    ASSERT_EQ(host.damages.size(), 3u);
    EXPECT_EQ(host.damages[0].scanout, 0u);
    EXPECT_TRUE(same_rect(host.damages[0].rect, Rect { 0, 0, 32, 24 }));
    EXPECT_TRUE(same_rect(host.damages[1].rect, Rect { 0, 0, 8, 4 }));
    EXPECT_TRUE(same_rect(host.damages[2].rect, Rect { 22, 16, 10, 8 }));
    EXPECT_EQ(device->stats().flushes, 4u);
}

TEST_F(GpuDeviceTest, Flush_ResourceOnTwoScanouts_DamagesEachInItsOwnCoordinates)
{
    make_device(DeviceOptions { { { 1024, 768 }, { 800, 600 } } });
    auto content = pattern(64 * 48 * 4, 10);
    create_with_backing(1, 64, 48, content);
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 32, 24 }), OK_NODATA);
    ASSERT_EQ(set_scanout(1, 1, Rect { 16, 16, 48, 32 }), OK_NODATA);

    EXPECT_EQ(flush(1, Rect { 20, 20, 8, 8 }), OK_NODATA);

    ASSERT_EQ(host.damages.size(), 2u);
    EXPECT_EQ(host.damages[0].scanout, 0u);
    EXPECT_TRUE(same_rect(host.damages[0].rect, Rect { 20, 20, 8, 4 }));
    EXPECT_EQ(host.damages[1].scanout, 1u);
    EXPECT_TRUE(same_rect(host.damages[1].rect, Rect { 4, 4, 8, 8 }));
}

TEST_F(GpuDeviceTest, Flush_ResourceNotOnAnyScanout_AnswersOkWithoutDamage)
{
    ASSERT_EQ(create_2d(1, 64, 48), OK_NODATA);

    EXPECT_EQ(flush(1, Rect { 0, 0, 64, 48 }), OK_NODATA);
    EXPECT_EQ(flush(1, Rect { 0, 0, 65, 48 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(flush(2, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_TRUE(host.damages.empty());
}

TEST_F(GpuDeviceTest, SetScanout_ResourceZero_DisablesTheScanout)
{
    create_with_backing(1, 64, 48, pattern(64 * 48 * 4, 11));
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 64, 48 }), OK_NODATA);

    EXPECT_EQ(set_scanout(0, 0, Rect {}), OK_NODATA);

    ASSERT_EQ(host.scanout_sets.size(), 2u);
    EXPECT_EQ(host.scanout_sets[1].scanout, 0u);
    EXPECT_FALSE(host.scanout_sets[1].source.has_value());
    // Flushing the resource no longer reaches the scanout.
    EXPECT_EQ(flush(1, Rect { 0, 0, 64, 48 }), OK_NODATA);
    EXPECT_TRUE(host.damages.empty());
}

TEST_F(GpuDeviceTest, ResourceUnref_WhileScannedOut_AnswersOkAndDisablesTheScanout)
{
    create_with_backing(1, 64, 48, pattern(64 * 48 * 4, 12));
    ASSERT_EQ(set_scanout(0, 1, Rect { 0, 0, 64, 48 }), OK_NODATA);

    EXPECT_EQ(unref(1), OK_NODATA);

    ASSERT_EQ(host.scanout_sets.size(), 2u);
    EXPECT_FALSE(host.scanout_sets[1].source.has_value());
    EXPECT_EQ(device->resources().count(), 0u);
    EXPECT_EQ(device->resources().host_bytes(), 0u);
    EXPECT_EQ(unref(1), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(unref(0), uint32_t(CtrlType::ErrInvalidResourceId));
}

TEST_F(GpuDeviceTest, SetScanout_BadRequests_AnswerAsQemu)
{
    create_with_backing(1, 64, 48, pattern(64 * 48 * 4, 13));
    ASSERT_EQ(create_2d(2, 64, 48), OK_NODATA);

    EXPECT_EQ(set_scanout(1, 1, Rect { 0, 0, 64, 48 }),
        uint32_t(CtrlType::ErrInvalidScanoutId)); // one output
    EXPECT_EQ(set_scanout(0, 3, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(
        set_scanout(0, 2, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrUnspec)); // no backing
    EXPECT_EQ(set_scanout(0, 1, Rect { 0, 0, 65, 48 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(set_scanout(0, 1, Rect { 0xFFFFFFF0, 0, 0x20, 48 }),
        uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(set_scanout(0, 1, Rect { 0, 0, 15, 48 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(set_scanout(0, 1, Rect { 0, 0, 64, 15 }), uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(set_scanout(0, 1, Rect { 48, 32, 16, 16 }), OK_NODATA);
    EXPECT_EQ(host.scanout_sets.size(), 1u);
}

TEST_F(GpuDeviceTest, SetScanout_WithQemuDisplay_AcceptsSixteenScanouts)
{
    host.qemu = true; // QEMU owns num_scanouts (its max_outputs, up to 16)
    create_with_backing(1, 64, 48, pattern(64 * 48 * 4, 14));

    EXPECT_EQ(set_scanout(15, 1, Rect { 0, 0, 64, 48 }), OK_NODATA);
    EXPECT_EQ(set_scanout(16, 1, Rect { 0, 0, 64, 48 }), uint32_t(CtrlType::ErrInvalidScanoutId));

    ASSERT_EQ(host.scanout_sets.size(), 1u);
    EXPECT_EQ(host.scanout_sets[0].scanout, 15u);
}

// ---- GET_DISPLAY_INFO and GET_EDID ------------------------------------------------------------

TEST_F(GpuDeviceTest, GetDisplayInfo_WithoutQemuDisplay_AnswersOurOutputs)
{
    make_device(DeviceOptions { { { 1024, 768 }, { 800, 600 } } });

    auto response = round_trip_bytes(
        bytes_of(header(CtrlType::GetDisplayInfo)), sizeof(RespDisplayInfo));

    ASSERT_EQ(response.size(), sizeof(RespDisplayInfo));
    RespDisplayInfo info;
    std::memcpy(&info, response.data(), sizeof(info));
    EXPECT_EQ(info.hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    EXPECT_TRUE(same_rect(info.pmodes[0].r, Rect { 0, 0, 1024, 768 }));
    EXPECT_EQ(info.pmodes[0].enabled, 1u);
    EXPECT_TRUE(same_rect(info.pmodes[1].r, Rect { 0, 0, 800, 600 }));
    EXPECT_EQ(info.pmodes[1].enabled, 1u);
    for (size_t i = 2; i < MAX_SCANOUTS; ++i) {
        EXPECT_EQ(info.pmodes[i].enabled, 0u);
        EXPECT_TRUE(same_rect(info.pmodes[i].r, Rect {}));
    }
    EXPECT_EQ(host.display_info_queries, 0);
}

TEST_F(GpuDeviceTest, GetEdid_WithoutQemuDisplay_AnswersTheEdidOfThatOutput)
{
    make_device(DeviceOptions { { { 1024, 768 }, { 800, 600 } } });
    GetEdid command {};
    command.hdr = header(CtrlType::GetEdid);
    command.scanout = 1;

    auto response = round_trip_bytes(bytes_of(command), sizeof(RespEdid));

    ASSERT_EQ(response.size(), sizeof(RespEdid));
    RespEdid edid;
    std::memcpy(&edid, response.data(), sizeof(edid));
    EXPECT_EQ(edid.hdr.type, uint32_t(CtrlType::OkEdid));
    auto expected = build_edid(EdidInfo { .width = 800, .height = 600, .serial = 2 });
    ASSERT_TRUE(expected.has_value());
    ASSERT_EQ(edid.size, expected->size());
    EXPECT_EQ(std::memcmp(edid.edid, expected->data(), expected->size()), 0);
    for (size_t i = expected->size(); i < sizeof(edid.edid); ++i)
        ASSERT_EQ(edid.edid[i], 0) << "byte " << i;
    command.scanout = 2;
    EXPECT_EQ(call(command).type, uint32_t(CtrlType::ErrInvalidParameter));
}

TEST_F(GpuDeviceTest, GetDisplayInfo_Forwarded_ParksTheQueueUntilQemuAnswers)
{
    host.qemu = true;
    auto query = queue(header(CtrlType::GetDisplayInfo, FLAG_FENCE, 5), sizeof(RespDisplayInfo));
    ResourceCreate2d create {};
    create.hdr = header(CtrlType::ResourceCreate2d, FLAG_FENCE, 6);
    create.resource_id = 1;
    create.format = XRGB;
    create.width = 64;
    create.height = 48;
    auto later = queue(create);

    run_control();

    EXPECT_EQ(control_driver.used_idx(), 0u);
    EXPECT_EQ(device->resources().count(), 0u) << "a command behind a parked one ran";
    ASSERT_EQ(host.pending_display_info.size(), 1u);
    run_control(); // another kick changes nothing
    EXPECT_EQ(control_driver.used_idx(), 0u);
    EXPECT_EQ(host.display_info_queries, 1);

    host.pending_display_info[0](display_info_of({ { 1920, 1080 }, { 1024, 768 } }));

    auto answer = collect(query);
    ASSERT_EQ(answer.size(), sizeof(RespDisplayInfo));
    RespDisplayInfo info;
    std::memcpy(&info, answer.data(), sizeof(info));
    EXPECT_EQ(info.hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    EXPECT_EQ(info.hdr.flags, FLAG_FENCE);
    EXPECT_EQ(info.hdr.fence_id, 5u);
    EXPECT_TRUE(same_rect(info.pmodes[0].r, Rect { 0, 0, 1920, 1080 }));
    EXPECT_TRUE(same_rect(info.pmodes[1].r, Rect { 0, 0, 1024, 768 }));
    EXPECT_EQ(info.pmodes[1].enabled, 1u);
    EXPECT_EQ(info.pmodes[2].enabled, 0u);
    auto second = collect(later);
    ASSERT_EQ(second.size(), sizeof(CtrlHdr));
    CtrlHdr h;
    std::memcpy(&h, second.data(), sizeof(h));
    EXPECT_EQ(h.type, OK_NODATA);
    EXPECT_EQ(h.fence_id, 6u);
    EXPECT_EQ(device->resources().count(), 1u);
    EXPECT_GE(control_driver.interrupts(), 1u);
}

TEST_F(GpuDeviceTest, GetDisplayInfo_ForwardedWithoutAnswer_FallsBackToOurOutputs)
{
    make_device(DeviceOptions { { { 640, 480 } } });
    host.qemu = true;
    auto query = queue(header(CtrlType::GetDisplayInfo), sizeof(RespDisplayInfo));
    run_control();
    ASSERT_EQ(host.pending_display_info.size(), 1u);

    host.pending_display_info[0](std::nullopt); // QEMU's time is up

    auto answer = collect(query);
    ASSERT_EQ(answer.size(), sizeof(RespDisplayInfo));
    RespDisplayInfo info;
    std::memcpy(&info, answer.data(), sizeof(info));
    EXPECT_EQ(info.hdr.type, uint32_t(CtrlType::OkDisplayInfo));
    EXPECT_TRUE(same_rect(info.pmodes[0].r, Rect { 0, 0, 640, 480 }));
    EXPECT_EQ(device->stats().forwarded_queries, 1u);
    EXPECT_EQ(device->stats().forwarded_timeouts, 1u);
}

TEST_F(GpuDeviceTest, GetDisplayInfo_QemuAnsweringAtOnce_CompletesInOrder)
{
    host.qemu = true;
    host.answer_at_once = true;
    host.display_answer = display_info_of({ { 1280, 800 } });
    auto query = queue(header(CtrlType::GetDisplayInfo), sizeof(RespDisplayInfo));
    auto later = queue(header(CtrlType::GetDisplayInfo), sizeof(RespDisplayInfo));

    run_control();

    for (const auto* submitted : { &query, &later }) {
        auto answer = collect(*submitted);
        ASSERT_EQ(answer.size(), sizeof(RespDisplayInfo));
        RespDisplayInfo info;
        std::memcpy(&info, answer.data(), sizeof(info));
        EXPECT_EQ(info.hdr.type, uint32_t(CtrlType::OkDisplayInfo));
        EXPECT_TRUE(same_rect(info.pmodes[0].r, Rect { 0, 0, 1280, 800 }));
    }
    EXPECT_EQ(host.display_info_queries, 2);
}

TEST_F(GpuDeviceTest, Reset_WhileAQueryIsParked_DropsTheLateAnswer)
{
    host.qemu = true;
    queue(header(CtrlType::GetDisplayInfo), sizeof(RespDisplayInfo));
    queue(header(CtrlType::GetDisplayInfo), sizeof(RespDisplayInfo));
    run_control();
    ASSERT_EQ(host.pending_display_info.size(), 1u);

    device->reset();
    host.pending_display_info[0](display_info_of({ { 1280, 800 } }));

    EXPECT_EQ(control_driver.used_idx(), 0u);
    EXPECT_FALSE(control_driver.used_pending());
    EXPECT_EQ(host.detach_calls, 1);
    EXPECT_EQ(host.display_info_queries, 1)
        << "the queue behind the parked query ran after the reset";
}

TEST_F(GpuDeviceTest, GetEdid_Forwarded_AnswersQemusBlobAndAllowsSixteenScanouts)
{
    host.qemu = true;
    GetEdid command {};
    command.hdr = header(CtrlType::GetEdid, FLAG_FENCE, 77);
    command.scanout = 15;
    auto query = queue(command, sizeof(RespEdid));
    run_control();
    ASSERT_EQ(host.edid_queries, std::vector<uint32_t> { 15 });
    RespEdid qemu_edid {};
    qemu_edid.size = 128;
    for (size_t i = 0; i < 128; ++i)
        qemu_edid.edid[i] = uint8_t(i ^ 0x5a);

    host.pending_edid[0](qemu_edid);

    auto answer = collect(query);
    ASSERT_EQ(answer.size(), sizeof(RespEdid));
    RespEdid edid;
    std::memcpy(&edid, answer.data(), sizeof(edid));
    EXPECT_EQ(edid.hdr.type, uint32_t(CtrlType::OkEdid));
    EXPECT_EQ(edid.hdr.fence_id, 77u);
    EXPECT_EQ(edid.size, 128u);
    EXPECT_EQ(std::memcmp(edid.edid, qemu_edid.edid, sizeof(edid.edid)), 0);
    command.scanout = 16;
    EXPECT_EQ(call(command).type, uint32_t(CtrlType::ErrInvalidParameter));
    EXPECT_EQ(host.edid_queries.size(), 1u);
}

// ---- fences -----------------------------------------------------------------------------------

TEST_F(GpuDeviceTest, FencedCommand_EchoesFenceIdAndContext)
{
    ResourceCreate2d c {};
    c.hdr = header(CtrlType::ResourceCreate2d, FLAG_FENCE, 0x123456789abcdef0, 7, 3);
    c.resource_id = 1;
    c.format = XRGB;
    c.width = 64;
    c.height = 48;

    CtrlHdr answer = call(c);

    EXPECT_EQ(answer.type, OK_NODATA);
    EXPECT_EQ(answer.flags, FLAG_FENCE);
    EXPECT_EQ(answer.fence_id, 0x123456789abcdef0u);
    EXPECT_EQ(answer.ctx_id, 7u);
    EXPECT_EQ(answer.ring_idx, 0u) << "ring_idx without FLAG_INFO_RING_IDX";
}

TEST_F(GpuDeviceTest, FencedCommandWithRingIndex_EchoesTheRingIndex_AlsoOnErrors)
{
    ResourceCreate2d c {};
    c.hdr = header(CtrlType::ResourceCreate2d, FLAG_FENCE | FLAG_INFO_RING_IDX, 9, 4, 2);
    c.resource_id = 0; // an error: fences complete all the same

    CtrlHdr answer = call(c);

    EXPECT_EQ(answer.type, uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(answer.flags, FLAG_FENCE | FLAG_INFO_RING_IDX);
    EXPECT_EQ(answer.fence_id, 9u);
    EXPECT_EQ(answer.ctx_id, 4u);
    EXPECT_EQ(answer.ring_idx, 2u);
}

TEST_F(GpuDeviceTest, UnfencedCommand_DoesNotEchoFenceFields)
{
    ResourceFlush c {};
    c.hdr = header(CtrlType::ResourceFlush, FLAG_INFO_RING_IDX, 55, 3, 1);
    c.resource_id = 9;

    CtrlHdr answer = call(c);

    EXPECT_EQ(answer.type, uint32_t(CtrlType::ErrInvalidResourceId));
    EXPECT_EQ(answer.flags, 0u);
    EXPECT_EQ(answer.fence_id, 0u);
    EXPECT_EQ(answer.ctx_id, 0u);
    EXPECT_EQ(answer.ring_idx, 0u);
}

// ---- commands we do not implement, and short buffers ------------------------------------------

TEST_F(GpuDeviceTest, UnknownAnd3dCommands_AnswerErrUnspec_BlobCommandsErrInvalidParameter)
{
    const std::pair<uint32_t, CtrlType> cases[] = {
        { 0x0999, CtrlType::ErrUnspec },
        { 0, CtrlType::ErrUnspec },
        { uint32_t(CtrlType::OkNodata), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::CtxCreate), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::Submit3d), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::ResourceMapBlob), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::ResourceAssignUuid), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::GetCapsetInfo), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::GetCapset), CtrlType::ErrUnspec },
        { uint32_t(CtrlType::ResourceCreateBlob), CtrlType::ErrInvalidParameter },
        { uint32_t(CtrlType::SetScanoutBlob), CtrlType::ErrInvalidParameter },
    };
    for (const auto& [type, expected] : cases) {
        SCOPED_TRACE(type);
        std::vector<std::byte> command(64);
        CtrlHdr h {};
        h.type = type;
        std::memcpy(command.data(), &h, sizeof(h));
        auto response = round_trip_bytes(command);
        ASSERT_EQ(response.size(), sizeof(CtrlHdr));
        CtrlHdr answer;
        std::memcpy(&answer, response.data(), sizeof(answer));
        EXPECT_EQ(answer.type, uint32_t(expected));
    }
}

TEST_F(GpuDeviceTest, CommandShorterThanItsStruct_AnswersErrUnspec)
{
    ResourceCreate2d c {};
    c.hdr = header(CtrlType::ResourceCreate2d, FLAG_FENCE, 3);
    c.resource_id = 1;
    c.format = XRGB;
    c.width = 64;
    c.height = 48;
    auto bytes = bytes_of(c);

    auto response = round_trip_bytes(std::span(bytes).first(sizeof(c) - 1));
    auto short_header = round_trip_bytes(std::span(bytes).first(10));

    ASSERT_EQ(response.size(), sizeof(CtrlHdr));
    CtrlHdr answer;
    std::memcpy(&answer, response.data(), sizeof(answer));
    EXPECT_EQ(answer.type, uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(answer.fence_id, 3u) << "the header was whole: the fence is echoed";
    ASSERT_EQ(short_header.size(), sizeof(CtrlHdr));
    std::memcpy(&answer, short_header.data(), sizeof(answer));
    EXPECT_EQ(answer.type, uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(device->resources().count(), 0u);
}

// ---- the cursor queue -------------------------------------------------------------------------

TEST_F(GpuDeviceTest, UpdateCursor_64x64Argb_HandsTheExactImageAndHotSpotToTheDisplay)
{
    auto content = pattern(64 * 64 * 4, 15);
    create_with_backing(5, 64, 64, content, ARGB);
    ASSERT_EQ(transfer(5, Rect { 0, 0, 64, 64 }), OK_NODATA);

    update_cursor(0, 5, 100, 200, 5, 7);

    ASSERT_EQ(host.cursor_sets.size(), 1u);
    const auto& set = host.cursor_sets[0];
    EXPECT_EQ(set.scanout, 0u);
    EXPECT_EQ(set.x, 100u);
    EXPECT_EQ(set.y, 200u);
    ASSERT_TRUE(set.image.has_value());
    EXPECT_EQ(set.image->hot_x, 5u);
    EXPECT_EQ(set.image->hot_y, 7u);
    ASSERT_EQ(set.image->argb.size(), 64u * 64u);
    EXPECT_EQ(std::memcmp(set.image->argb.data(), content.data(), content.size()), 0);
    EXPECT_EQ(device->stats().cursor_updates, 1u);
    EXPECT_EQ(device->stats().cursor_errors, 0u);
}

TEST_F(GpuDeviceTest, UpdateCursor_R8G8B8A8_IsConvertedToArgb)
{
    auto content = pattern(64 * 64 * 4, 16);
    create_with_backing(5, 64, 64, content, uint32_t(Format::R8G8B8A8Unorm));
    ASSERT_EQ(transfer(5, Rect { 0, 0, 64, 64 }), OK_NODATA);

    update_cursor(0, 5, 0, 0, 0, 0);

    ASSERT_EQ(host.cursor_sets.size(), 1u);
    ASSERT_TRUE(host.cursor_sets[0].image.has_value());
    const auto& argb = host.cursor_sets[0].image->argb;
    for (size_t i = 0; i < 64 * 64; ++i) {
        auto channel = [&](size_t k) { return uint32_t(content[i * 4 + k]); };
        uint32_t expected = channel(3) << 24 | channel(0) << 16 | channel(1) << 8
            | channel(2); // R, G, B, A in memory
        ASSERT_EQ(argb[i], expected) << "pixel " << i;
    }
}

TEST_F(GpuDeviceTest, UpdateCursor_BadResources_ChangeNothingAndAreCounted)
{
    create_with_backing(5, 32, 32, pattern(32 * 32 * 4, 17), ARGB);

    update_cursor(0, 5, 10, 10, 0, 0); // not 64x64
    update_cursor(0, 6, 10, 10, 0, 0); // no such resource
    update_cursor(1, 0, 10, 10, 0, 0); // no such scanout

    EXPECT_TRUE(host.cursor_sets.empty());
    EXPECT_EQ(device->stats().cursor_commands, 3u);
    EXPECT_EQ(device->stats().cursor_errors, 3u);
}

TEST_F(GpuDeviceTest, UpdateCursorWithResourceZero_HidesTheCursor_MoveCursorMovesIt)
{
    update_cursor(0, 0, 30, 40, 0, 0);
    move_cursor(0, 50, 60);

    ASSERT_EQ(host.cursor_sets.size(), 1u);
    EXPECT_FALSE(host.cursor_sets[0].image.has_value());
    EXPECT_EQ(host.cursor_sets[0].x, 30u);
    EXPECT_EQ(host.cursor_sets[0].y, 40u);
    ASSERT_EQ(host.cursor_moves.size(), 1u);
    EXPECT_EQ(host.cursor_moves[0].scanout, 0u);
    EXPECT_EQ(host.cursor_moves[0].x, 50u);
    EXPECT_EQ(host.cursor_moves[0].y, 60u);
    EXPECT_EQ(device->stats().cursor_moves, 1u);
}

TEST_F(GpuDeviceTest, ControlCommandOnTheCursorQueue_IsCountedNotRun)
{
    ResourceCreate2d c {};
    c.hdr = header(CtrlType::ResourceCreate2d);
    c.resource_id = 1;
    c.format = XRGB;
    c.width = 64;
    c.height = 64;
    auto bytes = bytes_of(c);
    uint64_t gpa = guest_buffer(bytes);
    cursor_driver.add({ { gpa, uint32_t(bytes.size()), false } });

    device->process_queue(cursor_queue, memory);

    auto used = cursor_driver.wait_used(std::chrono::milliseconds(0));
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 0u);
    EXPECT_EQ(device->resources().count(), 0u);
    EXPECT_EQ(device->stats().cursor_errors, 1u);
}

// ---- blob resources -----------------------------------------------------------------------------

// An async reader of a framebuffer, as an UPDATE being written to QEMU is.
struct FakeReader final : StorageReader {
    explicit FakeReader(const PixelStorage& storage)
        : pixels(storage)
    {
        pixels.add_reader(this);
    }
    void let_go() override
    {
        ++let_go_calls;
        pixels.remove_reader(this);
    }
    const PixelStorage& pixels;
    int let_go_calls = 0;
};

class GpuDeviceBlobTest : public GpuDeviceTest {
protected:
    void SetUp() override
    {
        GpuDeviceTest::SetUp();
        DeviceOptions options;
        options.blob = true;
        options.release_timeout = std::chrono::milliseconds(33);
        make_device(options);
    }
    // A blob of width x height x 4 bytes in two pieces of guest RAM with a page between them.
    CtrlHdr create_blob(uint32_t id, uint32_t width, uint32_t height)
    {
        uint64_t size = uint64_t(width) * height * 4;
        uint64_t half = (size / 2 + 4095) / 4096 * 4096;
        uint64_t first = ram.alloc(half + 4096, 4096), second = ram.alloc(size, 4096);
        ResourceCreateBlob c {};
        c.hdr = header(CtrlType::ResourceCreateBlob);
        c.resource_id = id;
        c.blob_mem = BLOB_MEM_GUEST;
        c.blob_flags = BLOB_FLAG_USE_SHAREABLE;
        c.nr_entries = 2;
        c.size = size;
        auto command = bytes_of(c);
        for (MemEntry e : { MemEntry { first, uint32_t(half), 0 },
                 MemEntry { second, uint32_t(size - half), 0 } }) {
            auto b = bytes_of(e);
            command.insert(command.end(), b.begin(), b.end());
        }
        auto response = round_trip_bytes(command);
        CtrlHdr h {};
        std::memcpy(&h, response.data(), std::min(response.size(), sizeof(h)));
        return h;
    }
    CtrlHdr show(uint32_t scanout, uint32_t id, uint32_t width, uint32_t height)
    {
        SetScanoutBlob c {};
        c.hdr = header(CtrlType::SetScanoutBlob);
        c.r = Rect { 0, 0, width, height };
        c.scanout_id = scanout;
        c.resource_id = id;
        c.width = width;
        c.height = height;
        c.format = uint32_t(Format::B8G8R8X8Unorm);
        c.strides[0] = width * 4;
        return call(c);
    }
    ResourceFlush flush_command(uint32_t id, Rect r, bool fenced, uint64_t fence = 0)
    {
        ResourceFlush c {};
        c.hdr = header(CtrlType::ResourceFlush, fenced ? FLAG_FENCE : 0, fence);
        c.r = r;
        c.resource_id = id;
        return c;
    }
};

TEST_F(GpuDeviceBlobTest, FencedFlush_WhileTheReplacedFramebufferIsRead_ParksTheQueueUntilReleased)
{
    ASSERT_EQ(create_blob(1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(create_blob(2, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(show(0, 1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(
        call(flush_command(1, Rect { 0, 0, 64, 32 }, true, 1)).type, uint32_t(CtrlType::OkNodata));
    auto a = host.scanout_sets.back().source->pixels;
    ASSERT_TRUE(a && a->guest_memory());
    FakeReader reader(*a);
    ASSERT_EQ(show(0, 2, 64, 32).type, uint32_t(CtrlType::OkNodata));

    auto flush = queue(flush_command(2, Rect { 0, 0, 64, 32 }, true, 2));
    CtrlHdr info = header(CtrlType::GetDisplayInfo);
    auto behind = queue(info, sizeof(RespDisplayInfo));
    run_control();
    EXPECT_FALSE(control_driver.used_pending()) << "the fence came while A was still read";
    ASSERT_EQ(host.releases.size(), 1u);
    EXPECT_EQ(host.releases[0].pixels.get(), a.get());
    EXPECT_EQ(host.releases[0].timeout, std::chrono::milliseconds(33));

    host.releases[0].done(false);
    auto answer = collect(flush);
    ASSERT_EQ(answer.size(), sizeof(CtrlHdr));
    CtrlHdr h {};
    std::memcpy(&h, answer.data(), sizeof(h));
    EXPECT_EQ(h.type, uint32_t(CtrlType::OkNodata));
    EXPECT_EQ(h.fence_id, 2u);
    EXPECT_EQ(collect(behind).size(), sizeof(RespDisplayInfo)) << "the queue goes on in order";
    EXPECT_EQ(device->stats().release_waits, 1u);
    EXPECT_EQ(device->stats().release_timeouts, 0u);
    a->remove_reader(&reader);
}

TEST_F(GpuDeviceBlobTest, Flush_UnfencedOrWithNobodyReading_CompletesAtOnce)
{
    ASSERT_EQ(create_blob(1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(create_blob(2, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(show(0, 1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    auto a = host.scanout_sets.back().source->pixels;
    // A reader, but an unfenced flush: the guest waits for nothing.
    FakeReader reader(*a);
    ASSERT_EQ(show(0, 2, 64, 32).type, uint32_t(CtrlType::OkNodata));
    EXPECT_EQ(
        call(flush_command(2, Rect { 0, 0, 64, 32 }, false)).type, uint32_t(CtrlType::OkNodata));
    a->remove_reader(&reader);
    // Fenced, nobody reading the replaced one.
    ASSERT_EQ(show(0, 1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    EXPECT_EQ(call(flush_command(1, Rect { 0, 0, 64, 32 }, true, 9)).fence_id, 9u);
    EXPECT_TRUE(host.releases.empty());
    EXPECT_EQ(device->stats().release_waits, 0u);
}

TEST_F(GpuDeviceBlobTest, Flush_DamagesInScanoutCoordinates_AndTheCrcBarrierRunsBeforeTheAnswer)
{
    ASSERT_EQ(create_blob(1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    SetScanoutBlob c {};
    c.hdr = header(CtrlType::SetScanoutBlob);
    c.r = Rect { 16, 8, 32, 16 }; // a part of the framebuffer
    c.resource_id = 1;
    c.width = 64;
    c.height = 32;
    c.format = uint32_t(Format::B8G8R8X8Unorm);
    c.strides[0] = 256;
    ASSERT_EQ(call(c).type, uint32_t(CtrlType::OkNodata));
    auto fb = host.scanout_sets.back().source->pixels;
    host.damages.clear();
    host.pixel_changes.clear();
    ASSERT_EQ(call(flush_command(1, Rect { 20, 10, 100 - 90, 4 }, true, 3)).type,
        uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(host.damages.size(), 1u);
    EXPECT_EQ(host.damages[0].rect.x, 4u);
    EXPECT_EQ(host.damages[0].rect.y, 2u);
    EXPECT_EQ(host.damages[0].rect.width, 10u);
    EXPECT_EQ(host.damages[0].rect.height, 4u);
    // The CRC of the frame is taken before the guest hears back (it may draw into it next).
    ASSERT_EQ(host.pixel_changes.size(), 1u);
    EXPECT_EQ(host.pixel_changes[0].pixels, fb.get());
    EXPECT_EQ(device->stats().bytes_transferred + device->stats().bytes_gathered, 0u);
}

TEST_F(GpuDeviceBlobTest, Reset_WhileAReleaseIsParked_TheLateReleaseIsDropped)
{
    ASSERT_EQ(create_blob(1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(create_blob(2, 64, 32).type, uint32_t(CtrlType::OkNodata));
    ASSERT_EQ(show(0, 1, 64, 32).type, uint32_t(CtrlType::OkNodata));
    auto a = host.scanout_sets.back().source->pixels;
    FakeReader reader(*a);
    ASSERT_EQ(show(0, 2, 64, 32).type, uint32_t(CtrlType::OkNodata));
    queue(flush_command(2, Rect { 0, 0, 64, 32 }, true, 2));
    run_control();
    ASSERT_EQ(host.releases.size(), 1u);
    device->reset();
    // The reset made every reader of guest pages let go.
    EXPECT_EQ(reader.let_go_calls, 1);
    host.releases[0].done(true); // late: nothing to complete, no crash
    EXPECT_FALSE(control_driver.used_pending());
}

} // namespace
} // namespace vgpu::virtio_gpu
