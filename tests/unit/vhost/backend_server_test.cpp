// The vhost-user backend (vhost/backend_server.h) in process: a BackendServer on an EventLoop that
// the test thread pumps, serving one end of a socketpair, a harness::Frontend on the other end,
// and a FakeDevice that records what reaches the device.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/event_loop.h"
#include "harness/frontend.h"
#include "vhost/backend_server.h"
#include "virtio/features.h"

namespace vgpu::vhost {
namespace {

using namespace std::chrono_literals;
using harness::Frontend;
using harness::RawReply;

constexpr uint64_t bit(unsigned b) { return uint64_t(1) << b; }

// Device feature bits the fake offers: two low bits, leaving 1 and 2 unoffered.
constexpr uint64_t fake_device_features = bit(0) | bit(3);

class FakeDevice final : public virtio::Device {
public:
    FakeDevice()
    {
        for (size_t i = 0; i < config.size(); ++i)
            config[i] = std::byte(0xa0 + i);
    }

    uint64_t device_features() const override { return fake_device_features; }
    size_t queue_count() const override { return 2; }
    size_t config_size() const override { return config.size(); }
    Result<void> read_config(uint32_t offset, std::span<std::byte> out) const override
    {
        if (offset > config.size() || out.size() > config.size() - offset)
            return Error::format("fake config read {}+{} out of range", offset, out.size());
        std::memcpy(out.data(), config.data() + offset, out.size());
        return {};
    }
    Result<void> write_config(uint32_t offset, std::span<const std::byte> in) override
    {
        config_writes.push_back({ offset, std::vector<std::byte>(in.begin(), in.end()) });
        return {};
    }
    void set_acked_features(uint64_t features) override
    {
        acked_features = features;
        ++acked_calls;
    }
    void process_queue(virtio::SplitQueue&, const virtio::GuestMemory&) override
    {
        ++process_calls;
    }
    void reset() override { ++resets; }

    // The device side of a display hotplug.
    void trigger_config_changed() { config_changed(); }

    struct ConfigWrite {
        uint32_t offset;
        std::vector<std::byte> data;
    };
    std::array<std::byte, 16> config {};
    std::vector<ConfigWrite> config_writes;
    uint64_t acked_features = 0;
    int acked_calls = 0;
    int process_calls = 0;
    int resets = 0;
};

template <typename T>
std::vector<std::byte> bytes_of(const T& value)
{
    auto span = std::as_bytes(std::span(&value, 1));
    return { span.begin(), span.end() };
}

uint64_t u64_of(const RawReply& reply)
{
    uint64_t value = 0;
    if (reply.payload.size() == sizeof(value))
        std::memcpy(&value, reply.payload.data(), sizeof(value));
    return value;
}

std::array<Fd, 2> socket_pair()
{
    int ends[2] = { -1, -1 };
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    return { Fd(ends[0]), Fd(ends[1]) };
}

class BackendServerTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto created_loop = EventLoop::create();
        ASSERT_TRUE(created_loop.has_value());
        loop = created_loop.release_value();
        auto created_server = BackendServer::create(*loop, device, options);
        ASSERT_TRUE(created_server.has_value());
        server = created_server.release_value();
        server->set_disconnect_callback([this] { ++disconnects; });
        auto ends = socket_pair();
        ASSERT_TRUE(server->serve_connected(std::move(ends[0])).has_value());
        frontend.emplace(std::move(ends[1]));
    }

    // Runs the loop until everything the frontend sent so far has been handled (the loop is
    // level-triggered and each round handles one message per ready socket).
    void pump()
    {
        for (int i = 0; i < 8; ++i)
            ASSERT_TRUE(loop->run_once(0ms).has_value());
    }

    void send(Request request, std::span<const std::byte> payload = {},
        std::span<const int> fds = {}, uint32_t extra_flags = 0)
    {
        frontend->send_raw(
            Header { uint32_t(request), VERSION | extra_flags, uint32_t(payload.size()) }, payload,
            fds);
        pump();
    }
    void send_u64(Request request, uint64_t value, uint32_t extra_flags = 0)
    {
        send(request, bytes_of(value), {}, extra_flags);
    }
    std::optional<RawReply> reply() { return frontend->read_reply(200ms); }
    // A GET_* request and its u64 answer.
    std::optional<uint64_t> get_u64(Request request)
    {
        send(request);
        auto answer = reply();
        if (!answer || answer->header.request != uint32_t(request) || answer->payload.size() != 8)
            return std::nullopt;
        return u64_of(*answer);
    }
    void set_protocol_features(uint64_t features)
    {
        send_u64(Request::SetProtocolFeatures, features);
    }
    // Hands the backend one end of a new socketpair as its backend channel; returns our end.
    Fd set_backend_channel()
    {
        auto ends = socket_pair();
        int theirs = ends[1].get();
        send(Request::SetBackendReqFd, {}, std::span(&theirs, 1));
        return std::move(ends[0]);
    }

    BackendOptions options {};
    FakeDevice device;
    int disconnects = 0;
    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<BackendServer> server;
    std::optional<Frontend> frontend;
};

class BackendServerWithoutMemSlotsTest : public BackendServerTest {
protected:
    BackendServerWithoutMemSlotsTest() { options.offer_configure_mem_slots = false; }
};

// ---- features -------------------------------------------------------------------------------

TEST_F(BackendServerTest, GetFeatures_OffersTransportAndDeviceBits)
{
    send(Request::GetFeatures);

    auto answer = reply();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->header.request, uint32_t(Request::GetFeatures));
    EXPECT_EQ(answer->header.flags, VERSION | FLAG_REPLY);
    uint64_t features = u64_of(*answer);
    EXPECT_EQ(features,
        bit(virtio::F_VERSION_1) | bit(virtio::F_RING_INDIRECT_DESC) | bit(virtio::F_RING_EVENT_IDX)
            | bit(F_PROTOCOL_FEATURES) | fake_device_features);
}

TEST_F(BackendServerTest, SetFeatures_UnofferedRingResetBit_IsMaskedAndCounted)
{
    uint64_t offered = server->offered_features();

    send_u64(Request::SetFeatures, offered | bit(virtio::F_RING_RESET));

    EXPECT_EQ(server->stats().masked_feature_bits, bit(virtio::F_RING_RESET));
    EXPECT_TRUE(server->connected());
}

TEST_F(BackendServerTest, SetFeatures_OnlyOfferedBits_MasksNothing)
{
    send_u64(Request::SetFeatures, server->offered_features());

    EXPECT_EQ(server->stats().masked_feature_bits, 0u);
}

TEST_F(BackendServerTest, SetFeatures_DeviceReceivesOnlyOfferedDeviceBits)
{
    uint64_t acked = bit(0) | bit(1) | bit(3) | bit(virtio::F_VERSION_1)
        | bit(virtio::F_RING_EVENT_IDX);

    send_u64(Request::SetFeatures, acked);

    EXPECT_EQ(device.acked_calls, 1);
    EXPECT_EQ(device.acked_features, bit(0) | bit(3));
    EXPECT_EQ(server->stats().masked_feature_bits, bit(1));
}

TEST_F(BackendServerTest, GetProtocolFeatures_Default_OffersConfigureMemSlots)
{
    auto features = get_u64(Request::GetProtocolFeatures);

    ASSERT_TRUE(features.has_value());
    EXPECT_EQ(*features,
        bit(PF_MQ) | bit(PF_REPLY_ACK) | bit(PF_BACKEND_REQ) | bit(PF_CONFIG) | bit(PF_RESET_DEVICE)
            | bit(PF_STATUS) | bit(PF_CONFIGURE_MEM_SLOTS));
}

TEST_F(BackendServerWithoutMemSlotsTest,
    GetProtocolFeatures_WithoutOption_DoesNotOfferConfigureMemSlots)
{
    auto features = get_u64(Request::GetProtocolFeatures);

    ASSERT_TRUE(features.has_value());
    EXPECT_EQ(*features,
        bit(PF_MQ) | bit(PF_REPLY_ACK) | bit(PF_BACKEND_REQ) | bit(PF_CONFIG) | bit(PF_RESET_DEVICE)
            | bit(PF_STATUS));
}

TEST_F(BackendServerTest, GetQueueNum_IsTheDeviceQueueCount)
{
    EXPECT_EQ(get_u64(Request::GetQueueNum), 2u);
}

TEST_F(BackendServerTest, GetMaxMemSlots_IsTheGuestMemoryLimit)
{
    EXPECT_EQ(get_u64(Request::GetMaxMemSlots), uint64_t(virtio::GuestMemory::max_regions));
}

// ---- REPLY_ACK ------------------------------------------------------------------------------

TEST_F(BackendServerTest, NeedReplyWithReplyAck_SuccessIsAckedWithZero)
{
    set_protocol_features(bit(PF_REPLY_ACK));

    send(Request::SetOwner, {}, {}, FLAG_NEED_REPLY);

    auto answer = reply();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->header.request, uint32_t(Request::SetOwner));
    EXPECT_EQ(u64_of(*answer), 0u);
}

TEST_F(BackendServerTest, NeedReplyWithReplyAck_FailureIsAckedWithNonZero)
{
    set_protocol_features(bit(PF_REPLY_ACK)); // no BACKEND_REQ: the request below must fail
    auto ends = socket_pair();
    int theirs = ends[1].get();

    send(Request::SetBackendReqFd, {}, std::span(&theirs, 1), FLAG_NEED_REPLY);

    auto answer = reply();
    ASSERT_TRUE(answer.has_value());
    EXPECT_NE(u64_of(*answer), 0u);
    EXPECT_EQ(server->stats().failed_requests, 1u);
    EXPECT_TRUE(server->connected());
}

TEST_F(BackendServerTest, NeedReplyWithoutReplyAck_NothingIsSent)
{
    send(Request::SetOwner, {}, {}, FLAG_NEED_REPLY);

    auto answer = frontend->read_reply(20ms);

    EXPECT_FALSE(answer.has_value());
}

// ---- backend channel ------------------------------------------------------------------------

TEST_F(BackendServerTest, ConfigChanged_WithBackendReqAndConfig_SendsConfigChangeMsg)
{
    set_protocol_features(bit(PF_BACKEND_REQ) | bit(PF_CONFIG));
    Fd channel = set_backend_channel();
    ASSERT_EQ(server->stats().failed_requests, 0u);

    device.trigger_config_changed();

    Header header {};
    ASSERT_EQ(
        ::recv(channel.get(), &header, sizeof(header), MSG_DONTWAIT), ssize_t(sizeof(header)));
    EXPECT_EQ(header.request, uint32_t(BackendRequest::ConfigChangeMsg));
    EXPECT_EQ(header.flags, VERSION);
    EXPECT_EQ(header.size, 0u);
}

TEST_F(BackendServerTest, ConfigChanged_WithoutConfigFeature_SendsNothing)
{
    set_protocol_features(bit(PF_BACKEND_REQ));
    Fd channel = set_backend_channel();
    ASSERT_EQ(server->stats().failed_requests, 0u);

    device.trigger_config_changed();

    Header header {};
    EXPECT_EQ(::recv(channel.get(), &header, sizeof(header), MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST_F(BackendServerTest, SetBackendReqFd_WithoutBackendReqFeature_Fails)
{
    set_protocol_features(bit(PF_CONFIG));

    Fd channel = set_backend_channel();
    device.trigger_config_changed();

    EXPECT_EQ(server->stats().failed_requests, 1u);
    Header header {};
    EXPECT_EQ(::recv(channel.get(), &header, sizeof(header), MSG_DONTWAIT), 0)
        << "the unused fd must be closed";
}

// ---- config ---------------------------------------------------------------------------------

TEST_F(BackendServerTest, GetConfig_ReturnsDeviceConfigAfterEchoedHeader)
{
    ConfigHeader request { 4, 8, 0 };
    std::vector<std::byte> payload = bytes_of(request);
    payload.resize(sizeof(ConfigHeader) + 8);

    send(Request::GetConfig, payload);

    auto answer = reply();
    ASSERT_TRUE(answer.has_value());
    ASSERT_EQ(answer->payload.size(), sizeof(ConfigHeader) + 8);
    ConfigHeader echoed;
    std::memcpy(&echoed, answer->payload.data(), sizeof(echoed));
    EXPECT_EQ(echoed.offset, 4u);
    EXPECT_EQ(echoed.size, 8u);
    for (size_t i = 0; i < 8; ++i)
        EXPECT_EQ(answer->payload[sizeof(ConfigHeader) + i], std::byte(0xa4 + i)) << i;
}

TEST_F(BackendServerTest, GetConfig_DeviceRefuses_DisconnectsRatherThanLeaveFrontendWaiting)
{
    ConfigHeader request { 12, 8, 0 }; // past the fake's 16 bytes
    std::vector<std::byte> payload = bytes_of(request);
    payload.resize(sizeof(ConfigHeader) + 8);

    send(Request::GetConfig, payload);

    EXPECT_TRUE(frontend->closed_by_backend(200ms));
    EXPECT_FALSE(server->connected());
    EXPECT_EQ(server->stats().protocol_errors, 1u);
    EXPECT_EQ(disconnects, 1);
}

TEST_F(BackendServerTest, SetConfig_ReachesDevice)
{
    std::vector<std::byte> payload = bytes_of(ConfigHeader { 4, 4, 0 });
    for (int b = 1; b <= 4; ++b)
        payload.push_back(std::byte(b));

    send(Request::SetConfig, payload);

    ASSERT_EQ(device.config_writes.size(), 1u);
    EXPECT_EQ(device.config_writes[0].offset, 4u);
    EXPECT_EQ(device.config_writes[0].data,
        (std::vector<std::byte> { std::byte(1), std::byte(2), std::byte(3), std::byte(4) }));
}

// ---- status, reset, disconnect --------------------------------------------------------------

TEST_F(BackendServerTest, SetStatusThenGetStatus_RoundTrips)
{
    uint64_t status = virtio::STATUS_ACKNOWLEDGE | virtio::STATUS_DRIVER
        | virtio::STATUS_FEATURES_OK;

    send_u64(Request::SetStatus, status);
    auto read_back = get_u64(Request::GetStatus);

    ASSERT_TRUE(read_back.has_value());
    EXPECT_EQ(*read_back, status);
    EXPECT_EQ(device.resets, 0);
}

TEST_F(BackendServerTest, SetStatusZero_ResetsDevice)
{
    send_u64(Request::SetStatus, virtio::STATUS_ACKNOWLEDGE | virtio::STATUS_DRIVER);
    send_u64(Request::SetFeatures, server->offered_features());

    send_u64(Request::SetStatus, 0);

    EXPECT_EQ(device.resets, 1);
    EXPECT_EQ(get_u64(Request::GetStatus), 0u);
}

TEST_F(BackendServerTest, ResetDevice_ResetsDevice)
{
    send(Request::ResetDevice);

    EXPECT_EQ(device.resets, 1);
    EXPECT_TRUE(server->connected());
}

TEST_F(BackendServerTest, FrontendCloses_CallsDisconnectCallbackAndResetsDevice)
{
    ASSERT_TRUE(server->connected());

    frontend.reset();
    pump();

    EXPECT_EQ(disconnects, 1);
    EXPECT_EQ(device.resets, 1);
    EXPECT_FALSE(server->connected());
}

TEST_F(BackendServerTest, MalformedHeader_DisconnectsWithProtocolError)
{
    frontend->send_raw(Header { uint32_t(Request::GetFeatures), 0 /* version 0 */, 0 }, {});
    pump();

    EXPECT_EQ(server->stats().protocol_errors, 1u);
    EXPECT_EQ(disconnects, 1);
    EXPECT_EQ(device.resets, 1);
    EXPECT_TRUE(frontend->closed_by_backend(200ms));
}

TEST_F(BackendServerTest, RequestsAreCounted)
{
    send(Request::SetOwner);
    send_u64(Request::SetStatus, 1);

    EXPECT_EQ(server->stats().requests, 2u);
    EXPECT_EQ(server->stats().failed_requests, 0u);
    EXPECT_EQ(server->stats().connections, 1u);
}

} // namespace
} // namespace vgpu::vhost
