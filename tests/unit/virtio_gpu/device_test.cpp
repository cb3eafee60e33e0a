// The virtio-gpu device stub (virtio_gpu/device.h): configuration space, control and cursor
// queues driven through real split queues in memfd guest RAM, and the display socket hand-over.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstring>

#include "harness/driver_queue.h"
#include "harness/guest_ram.h"
#include "virtio/guest_memory.h"
#include "virtio/split_queue.h"
#include "virtio_gpu/device.h"

namespace vgpu::virtio_gpu {
namespace {

using harness::DriverQueue;
using harness::GuestRam;

constexpr uint16_t queue_size = 8;

Config read_whole_config(const Device& device)
{
    Config config {};
    auto result = device.read_config(0, std::as_writable_bytes(std::span(&config, 1)));
    EXPECT_TRUE(result.has_value());
    return config;
}

std::span<const std::byte> bytes_of_u32(const uint32_t& value) { return std::as_bytes(std::span(&value, 1)); }

class FakeDisplayHost final : public DisplayHost {
public:
    Result<void> attach_qemu_display(Fd socket) override
    {
        attached = std::move(socket);
        ++attach_calls;
        if (refuse)
            return Error::format("fake display host refuses");
        return {};
    }
    void detach_qemu_display() override { ++detach_calls; }

    Fd attached;
    int attach_calls = 0;
    int detach_calls = 0;
    bool refuse = false;
};

// ---- configuration space --------------------------------------------------------------------

TEST(GpuDeviceConfig, ReadWholeConfig_ReportsNumScanouts)
{
    Device device(DeviceOptions { 3 });

    Config config = read_whole_config(device);

    EXPECT_EQ(config.num_scanouts, 3u);
    EXPECT_EQ(config.events_read, 0u);
    EXPECT_EQ(config.events_clear, 0u);
    EXPECT_EQ(config.num_capsets, 0u);
}

TEST(GpuDeviceConfig, ReadNumScanoutsField_ByOffset)
{
    Device device(DeviceOptions { 2 });
    uint32_t value = 0;

    auto result = device.read_config(offsetof(Config, num_scanouts), std::as_writable_bytes(std::span(&value, 1)));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(value, 2u);
}

TEST(GpuDeviceConfig, ConfigSize_Is16)
{
    Device device(DeviceOptions {});

    EXPECT_EQ(device.config_size(), 16u);
}

TEST(GpuDeviceConfig, ReadPastEnd_Fails)
{
    Device device(DeviceOptions {});
    std::array<std::byte, 8> out {};

    auto result = device.read_config(12, out);

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceConfig, ReadStartingAtEnd_Fails)
{
    Device device(DeviceOptions {});
    std::array<std::byte, 1> out {};

    auto result = device.read_config(16, out);

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceConfig, ReadAtHugeOffset_Fails)
{
    Device device(DeviceOptions {});
    std::array<std::byte, 4> out {};

    auto result = device.read_config(0xfffffffe, out);

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceConfig, ReadLongerThanConfig_Fails)
{
    Device device(DeviceOptions {});
    std::array<std::byte, 17> out {};

    auto result = device.read_config(0, out);

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceConfig, RaiseDisplayEvent_SetsEventsReadAndCallsConfigChanged)
{
    Device device(DeviceOptions {});
    int changes = 0;
    device.set_config_changed_callback([&] { ++changes; });

    device.raise_display_event();

    EXPECT_EQ(read_whole_config(device).events_read, EVENT_DISPLAY);
    EXPECT_EQ(changes, 1);
}

TEST(GpuDeviceConfig, WriteEventsClear_ClearsEventsRead)
{
    Device device(DeviceOptions {});
    device.raise_display_event();
    uint32_t clear = EVENT_DISPLAY;

    auto result = device.write_config(offsetof(Config, events_clear), bytes_of_u32(clear));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(read_whole_config(device).events_read, 0u);
}

TEST(GpuDeviceConfig, WriteEventsClearOtherBit_KeepsDisplayEvent)
{
    Device device(DeviceOptions {});
    device.raise_display_event();
    uint32_t clear = 2;

    auto result = device.write_config(offsetof(Config, events_clear), bytes_of_u32(clear));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(read_whole_config(device).events_read, EVENT_DISPLAY);
}

TEST(GpuDeviceConfig, WriteNumScanouts_FailsAndKeepsValue)
{
    Device device(DeviceOptions { 1 });
    uint32_t value = 16;

    auto result = device.write_config(offsetof(Config, num_scanouts), bytes_of_u32(value));

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(read_whole_config(device).num_scanouts, 1u);
}

TEST(GpuDeviceConfig, WriteEventsRead_Fails)
{
    Device device(DeviceOptions {});
    device.raise_display_event();
    uint32_t value = 0;

    auto result = device.write_config(offsetof(Config, events_read), bytes_of_u32(value));

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(read_whole_config(device).events_read, EVENT_DISPLAY);
}

TEST(GpuDeviceConfig, WriteEventsClearWithWrongLength_Fails)
{
    Device device(DeviceOptions {});
    device.raise_display_event();
    std::array<std::byte, 8> eight { std::byte(1) };

    auto result = device.write_config(offsetof(Config, events_clear), eight);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(read_whole_config(device).events_read, EVENT_DISPLAY);
}

TEST(GpuDeviceConfig, Reset_RestoresConfig)
{
    Device device(DeviceOptions { 4 });
    device.raise_display_event();

    device.reset();

    Config config = read_whole_config(device);
    EXPECT_EQ(config.events_read, 0u);
    EXPECT_EQ(config.num_scanouts, 4u);
}

// ---- display socket -------------------------------------------------------------------------

TEST(GpuDeviceDisplay, SetDisplaySocketWithoutHost_Fails)
{
    Device device(DeviceOptions {});
    auto fd = make_eventfd();
    ASSERT_TRUE(fd.has_value());

    auto result = device.set_display_socket(fd.release_value());

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceDisplay, SetDisplaySocketWithHost_ForwardsTheFd)
{
    Device device(DeviceOptions {});
    FakeDisplayHost host;
    device.set_display_host(&host);
    auto fd = make_eventfd();
    ASSERT_TRUE(fd.has_value());
    int raw = fd->get();

    auto result = device.set_display_socket(fd.release_value());

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(host.attach_calls, 1);
    EXPECT_EQ(host.attached.get(), raw);
}

TEST(GpuDeviceDisplay, HostRefusingSocket_FailureIsReturned)
{
    Device device(DeviceOptions {});
    FakeDisplayHost host;
    host.refuse = true;
    device.set_display_host(&host);
    auto fd = make_eventfd();
    ASSERT_TRUE(fd.has_value());

    auto result = device.set_display_socket(fd.release_value());

    EXPECT_FALSE(result.has_value());
}

TEST(GpuDeviceDisplay, Reset_DetachesQemuDisplay)
{
    Device device(DeviceOptions {});
    FakeDisplayHost host;
    device.set_display_host(&host);

    device.reset();

    EXPECT_EQ(host.detach_calls, 1);
}

// ---- queues ---------------------------------------------------------------------------------

class GpuDeviceQueueTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        for (const auto& region : ram.regions())
            ASSERT_TRUE(memory.add_region(region, ram.fd()).has_value());
        start(control_queue, control_driver);
        start(cursor_queue, cursor_driver);
    }

    void start(virtio::SplitQueue& queue, DriverQueue& driver)
    {
        ASSERT_TRUE(queue.set_size(queue_size).has_value());
        ASSERT_TRUE(queue.set_addresses(ram.frontend_va(driver.desc_gpa()), ram.frontend_va(driver.avail_gpa()),
                             ram.frontend_va(driver.used_gpa()))
                        .has_value());
        auto call = driver.call().dup();
        ASSERT_TRUE(call.has_value());
        queue.set_call(call.release_value());
        ASSERT_TRUE(queue.start(memory).has_value());
    }

    // Puts `header` in guest RAM, makes a chain of it plus `response_size` writable bytes, runs the
    // control queue and returns the used length; the response is read with response().
    std::optional<harness::UsedElement> control_command(const CtrlHdr& header, uint32_t response_size = sizeof(CtrlHdr))
    {
        uint64_t request = ram.alloc(sizeof(CtrlHdr));
        ram.put(request, header);
        response_gpa = ram.alloc(64);
        std::memset(ram.host(response_gpa), 0xee, 64);
        if (response_size)
            control_driver.add({ { request, uint32_t(sizeof(CtrlHdr)), false }, { response_gpa, response_size, true } });
        else
            control_driver.add({ { request, uint32_t(sizeof(CtrlHdr)), false } });
        device.process_queue(control_queue, memory);
        return control_driver.wait_used(std::chrono::milliseconds(0));
    }
    CtrlHdr response() const { return ram.get<CtrlHdr>(response_gpa); }

    GuestRam ram { 4 << 20, 0 };
    virtio::GuestMemory memory;
    DriverQueue control_driver { ram, queue_size };
    DriverQueue cursor_driver { ram, queue_size };
    virtio::SplitQueue control_queue { uint16_t(Device::CONTROL_QUEUE) };
    virtio::SplitQueue cursor_queue { uint16_t(Device::CURSOR_QUEUE) };
    Device device { DeviceOptions { 1 } };
    uint64_t response_gpa = 0;
};

TEST_F(GpuDeviceQueueTest, ControlCommand_AnsweredWithErrUnspec)
{
    CtrlHdr request {};
    request.type = uint32_t(CtrlType::GetDisplayInfo);

    auto used = control_command(request);

    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, sizeof(CtrlHdr));
    CtrlHdr answer = response();
    EXPECT_EQ(answer.type, 0x1200u);
    EXPECT_EQ(answer.flags, 0u);
    EXPECT_EQ(answer.fence_id, 0u);
    EXPECT_EQ(answer.ctx_id, 0u);
    EXPECT_EQ(device.stats().control_commands, 1u);
    EXPECT_EQ(device.stats().error_responses, 1u);
}

TEST_F(GpuDeviceQueueTest, FencedControlCommand_EchoesFenceAndContext)
{
    CtrlHdr request {};
    request.type = uint32_t(CtrlType::ResourceCreate2d);
    request.flags = FLAG_FENCE;
    request.fence_id = 0x123456789abcdef0;
    request.ctx_id = 7;
    request.ring_idx = 3; // ignored without INFO_RING_IDX

    auto used = control_command(request);

    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, sizeof(CtrlHdr));
    CtrlHdr answer = response();
    EXPECT_EQ(answer.type, uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(answer.flags, FLAG_FENCE);
    EXPECT_EQ(answer.fence_id, 0x123456789abcdef0u);
    EXPECT_EQ(answer.ctx_id, 7u);
    EXPECT_EQ(answer.ring_idx, 0u);
}

TEST_F(GpuDeviceQueueTest, FencedCommandWithRingIndex_EchoesRingIndex)
{
    CtrlHdr request {};
    request.type = uint32_t(CtrlType::Submit3d);
    request.flags = FLAG_FENCE | FLAG_INFO_RING_IDX;
    request.fence_id = 9;
    request.ring_idx = 2;

    auto used = control_command(request);

    ASSERT_TRUE(used.has_value());
    CtrlHdr answer = response();
    EXPECT_EQ(answer.flags, FLAG_FENCE | FLAG_INFO_RING_IDX);
    EXPECT_EQ(answer.fence_id, 9u);
    EXPECT_EQ(answer.ring_idx, 2u);
}

TEST_F(GpuDeviceQueueTest, UnfencedCommandWithFenceId_DoesNotEchoIt)
{
    CtrlHdr request {};
    request.type = uint32_t(CtrlType::ResourceFlush);
    request.fence_id = 55;
    request.ctx_id = 3;

    auto used = control_command(request);

    ASSERT_TRUE(used.has_value());
    CtrlHdr answer = response();
    EXPECT_EQ(answer.flags, 0u);
    EXPECT_EQ(answer.fence_id, 0u);
    EXPECT_EQ(answer.ctx_id, 0u);
}

TEST_F(GpuDeviceQueueTest, ControlChainWithoutWritablePart_CompletesWithLengthZero)
{
    CtrlHdr request {};
    request.type = uint32_t(CtrlType::GetDisplayInfo);

    auto used = control_command(request, 0);

    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 0u);
    EXPECT_EQ(device.stats().short_commands, 1u);
}

TEST_F(GpuDeviceQueueTest, ResponseBufferTooSmall_CompletesWithLengthZeroAndWritesNothing)
{
    CtrlHdr request {};

    auto used = control_command(request, sizeof(CtrlHdr) - 1);

    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 0u);
    EXPECT_EQ(ram.get<uint8_t>(response_gpa), 0xee);
}

TEST_F(GpuDeviceQueueTest, RequestShorterThanHeader_StillAnsweredWithErrUnspec)
{
    uint64_t request = ram.alloc(8);
    response_gpa = ram.alloc(sizeof(CtrlHdr));
    control_driver.add({ { request, 8, false }, { response_gpa, uint32_t(sizeof(CtrlHdr)), true } });

    device.process_queue(control_queue, memory);

    auto used = control_driver.wait_used(std::chrono::milliseconds(0));
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, sizeof(CtrlHdr));
    EXPECT_EQ(response().type, uint32_t(CtrlType::ErrUnspec));
    EXPECT_EQ(device.stats().short_commands, 1u);
}

TEST_F(GpuDeviceQueueTest, SeveralControlCommands_AllCompletedInOneCall)
{
    for (int i = 0; i < 3; ++i) {
        uint64_t request = ram.alloc(sizeof(CtrlHdr));
        uint64_t resp = ram.alloc(sizeof(CtrlHdr));
        control_driver.add({ { request, uint32_t(sizeof(CtrlHdr)), false }, { resp, uint32_t(sizeof(CtrlHdr)), true } });
    }

    device.process_queue(control_queue, memory);

    EXPECT_EQ(control_driver.used_idx(), 3u);
    EXPECT_EQ(device.stats().control_commands, 3u);
}

TEST_F(GpuDeviceQueueTest, ControlCommand_SignalsCallEventfd)
{
    CtrlHdr request {};

    auto used = control_command(request);

    ASSERT_TRUE(used.has_value());
    EXPECT_GE(control_driver.interrupts(), 1u);
    EXPECT_EQ(control_queue.stats().notifications, 1u);
}

TEST_F(GpuDeviceQueueTest, CursorCommand_CompletesWithLengthZero)
{
    uint64_t command = ram.alloc(56);
    uint64_t writable = ram.alloc(64);
    cursor_driver.add({ { command, 56, false }, { writable, 64, true } });

    device.process_queue(cursor_queue, memory);

    auto used = cursor_driver.wait_used(std::chrono::milliseconds(0));
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 0u);
    EXPECT_EQ(device.stats().cursor_commands, 1u);
    EXPECT_EQ(device.stats().control_commands, 0u);
}

} // namespace
} // namespace vgpu::virtio_gpu
