// The backend brought up exactly as QEMU 10's vhost-user-gpu-pci does it (shared/PROTOCOL.md),
// and round trips on both queues.
#include <nlohmann/json.hpp>

#include "display/qemu/wire.h"
#include "integration/common.h"
#include "virtio/features.h"

namespace vgpu::integration {

using harness::BackendProcess;
using harness::QemuSession;
using vhost::Request;

constexpr uint64_t bit(unsigned b) { return uint64_t(1) << b; }

TEST(Bringup, QemuSequenceWithAddMemReg_RoundTripsOnBothQueues)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();

    EXPECT_TRUE(session.used_add_mem_reg());
    expect_control_round_trip(session);
    expect_cursor_round_trip(session);
    EXPECT_GT(session.control().interrupts(), 0u)
        << "the control queue completed without an interrupt";
    EXPECT_TRUE(backend.alive());
}

TEST(Bringup, UnofferedRingResetBit_IsMaskedAndLogged)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();

    EXPECT_FALSE(session.offered_features() & bit(virtio::F_RING_RESET));
    EXPECT_TRUE(session.acked_features() & bit(virtio::F_RING_RESET));
    expect_control_round_trip(session);
    EXPECT_NE(backend.log().find("ignoring bits 0x10000000000"), std::string::npos)
        << backend.log();
}

TEST(Bringup, OfferedFeatures_AreTheTransportBitsQemuNeeds)
{
    auto backend = BackendProcess::listen();
    auto frontend = harness::Frontend::connect(backend.socket_path());

    uint64_t features = frontend.get_features();
    uint64_t protocol = frontend.get_u64(Request::GetProtocolFeatures).value_or(0);

    EXPECT_TRUE(features & bit(virtio::F_VERSION_1));
    EXPECT_TRUE(features & bit(virtio::F_RING_INDIRECT_DESC));
    EXPECT_TRUE(features & bit(virtio::F_RING_EVENT_IDX));
    EXPECT_TRUE(features & bit(vhost::F_PROTOCOL_FEATURES));
    uint64_t expected_protocol = bit(vhost::PF_MQ) | bit(vhost::PF_REPLY_ACK)
        | bit(vhost::PF_BACKEND_REQ) | bit(vhost::PF_CONFIG) | bit(vhost::PF_RESET_DEVICE)
        | bit(vhost::PF_CONFIGURE_MEM_SLOTS) | bit(vhost::PF_STATUS);
    EXPECT_EQ(protocol, expected_protocol);
    EXPECT_EQ(frontend.get_u64(Request::GetQueueNum), 2u);
    EXPECT_EQ(frontend.get_u64(Request::GetMaxMemSlots), 32u);
}

TEST(Bringup, WithoutConfigureMemSlots_QemuFallsBackToSetMemTable)
{
    auto backend = BackendProcess::listen({ "--no-configure-mem-slots" });
    QemuSession session(backend.socket_path());
    session.start();

    EXPECT_FALSE(session.frontend().protocol_features() & bit(vhost::PF_CONFIGURE_MEM_SLOTS));
    EXPECT_FALSE(session.used_add_mem_reg());
    expect_control_round_trip(session);
    expect_cursor_round_trip(session);
}

TEST(Bringup, IndirectDescriptors_RoundTrip)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();

    auto response = session.control_round_trip(
        ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo), 408, /*indirect=*/true);

    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(parse_header(*response).type, uint32_t(virtio_gpu::CtrlType::OkDisplayInfo));
}

TEST(Bringup, ManyCommands_AllComplete)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path(), { .queue_size = 64 });
    session.start();

    // More commands than the queue size: the ring wraps, the used index keeps counting.
    for (uint64_t i = 0; i < 200; ++i)
        expect_control_round_trip(session, 1000 + i);
    EXPECT_TRUE(backend.alive());
}

TEST(Bringup, GetConfig_ReportsOneScanoutAndNoCapsets)
{
    auto backend = BackendProcess::listen();
    auto frontend = harness::Frontend::connect(backend.socket_path());
    std::byte payload[sizeof(vhost::ConfigHeader) + sizeof(virtio_gpu::Config)] {};
    vhost::ConfigHeader h { 0, sizeof(virtio_gpu::Config), 0 };
    std::memcpy(payload, &h, sizeof(h));

    frontend.send_raw({ uint32_t(Request::GetConfig), vhost::VERSION, sizeof(payload) }, payload);
    auto reply = frontend.read_reply();

    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->payload.size(), sizeof(payload));
    virtio_gpu::Config config;
    std::memcpy(&config, reply->payload.data() + sizeof(h), sizeof(config));
    EXPECT_EQ(config.num_scanouts, 1u);
    EXPECT_EQ(config.num_capsets, 0u);
    EXPECT_EQ(config.events_read, 0u);
}

TEST(Bringup, DisplaySocket_ProtocolFeaturesNegotiated)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();

    ASSERT_NE(session.display(), nullptr);
    auto get = session.display()->wait_for(
        uint32_t(display::qemu::GpuRequest::GetProtocolFeatures));
    auto set = session.display()->wait_for(
        uint32_t(display::qemu::GpuRequest::SetProtocolFeatures));

    ASSERT_TRUE(get.has_value());
    ASSERT_TRUE(set.has_value());
    ASSERT_EQ(set->payload.size(), 8u);
    uint64_t agreed;
    std::memcpy(&agreed, set->payload.data(), 8);
    // Only what both sides support: EDID (QEMU also offers DMABUF2, which we do not use).
    EXPECT_EQ(agreed, 1u);
}

TEST(Bringup, PrintCapabilities_IsValidJsonWithTypeGpu)
{
    auto out = BackendProcess::run_to_completion({ "--print-capabilities" });

    EXPECT_EQ(out.exit_code, 0);
    auto json = nlohmann::json::parse(out.out, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << out.out;
    EXPECT_EQ(json["type"], "gpu");
    ASSERT_TRUE(json["features"].is_array());
    // No render node or virgl: this backend has no 3D, and libvirt would insist on a render node.
    for (const auto& f : json["features"]) {
        EXPECT_NE(f, "render-node");
        EXPECT_NE(f, "virgl");
    }
}

} // namespace vgpu::integration
