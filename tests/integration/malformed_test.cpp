// Malformed input from a frontend or a guest: every case gets an error (a failed REPLY_ACK, a
// used entry of length 0, or a closed connection) and the backend keeps serving. Never a crash.
#include <sys/socket.h>

#include "integration/common.h"
#include "virtio/descriptor_chain.h"

namespace vgpu::integration {

using harness::BackendProcess;
using harness::Frontend;
using harness::QemuSession;
using vhost::Header;
using vhost::Request;

namespace {

constexpr uint64_t bit(unsigned b) { return uint64_t(1) << b; }

// A frontend with REPLY_ACK negotiated, so failures come back as a non-zero ack.
Frontend acking_frontend(const BackendProcess& backend)
{
    auto f = Frontend::connect(backend.socket_path());
    uint64_t pf = bit(vhost::PF_REPLY_ACK) | bit(vhost::PF_CONFIGURE_MEM_SLOTS);
    f.request_obj(Request::SetProtocolFeatures, pf);
    return f;
}

// The connection still answers.
void expect_serving(Frontend& f)
{
    EXPECT_TRUE(f.get_u64(Request::GetQueueNum) == 2u) << "the connection stopped answering";
}

// The connection was closed, the backend lives, and a new frontend gets a full session.
void expect_closed_then_recovers(Frontend& f, BackendProcess& backend)
{
    EXPECT_TRUE(f.closed_by_backend()) << "expected the backend to close the connection";
    ASSERT_TRUE(backend.alive()) << backend.log();
    f = Frontend(Fd()); // QEMU gone
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);
}

std::vector<std::byte> u64_bytes(uint64_t v)
{
    auto b = std::as_bytes(std::span(&v, 1));
    return { b.begin(), b.end() };
}

} // namespace

// ---- framing: the stream cannot be trusted, the connection is closed --------------------------

TEST(Malformed, BadVersion_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    f.send_raw({ uint32_t(Request::GetFeatures), 0x2, 0 }, {});
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, ReplyFlagOnRequest_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    f.send_raw({ uint32_t(Request::GetFeatures), vhost::VERSION | vhost::FLAG_REPLY, 0 }, {});
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, OversizedPayload_ClosesConnectionBeforeReadingIt)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    f.send_raw({ uint32_t(Request::SetFeatures), vhost::VERSION, 0x7fffffff }, {});
    expect_closed_then_recovers(f, backend);
    EXPECT_NE(backend.log().find("exceeds the limit of 4096"), std::string::npos);
}

TEST(Malformed, TruncatedMessage_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    Header h { uint32_t(Request::SetFeatures), vhost::VERSION, 8 };
    std::byte bytes[sizeof(h) + 4] {};
    std::memcpy(bytes, &h, sizeof(h));
    f.send_bytes(bytes);
    ::shutdown(f.socket().get(), SHUT_WR); // the rest never comes
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, TooManyFds_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    std::vector<Fd> owned;
    std::vector<int> fds;
    for (int i = 0; i < 12; ++i) {
        owned.push_back(make_eventfd().release_value());
        fds.push_back(owned.back().get());
    }
    f.send_raw({ uint32_t(Request::SetOwner), vhost::VERSION, 0 }, {}, fds);
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, HeaderSplitAcrossWrites_IsStillOneMessage)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    Header h { uint32_t(Request::GetQueueNum), vhost::VERSION, 0 };
    auto bytes = std::as_bytes(std::span(&h, 1));
    f.send_bytes(bytes.subspan(0, 5));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    f.send_bytes(bytes.subspan(5));
    auto reply = f.read_reply();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->header.request, uint32_t(Request::GetQueueNum));
}

// ---- per-request errors: a failed ack, the connection goes on ----------------------------------

TEST(Malformed, WrongPayloadSize_FailsAckAndKeepsServing)
{
    auto backend = BackendProcess::listen();
    auto f = acking_frontend(backend);
    uint32_t four = 0;
    EXPECT_EQ(f.request_obj(Request::SetFeatures, four, {}, true), 1u);
    expect_serving(f);
}

TEST(Malformed, UnknownRequest_FailsAckAndKeepsServing)
{
    auto backend = BackendProcess::listen();
    auto f = acking_frontend(backend);
    EXPECT_EQ(f.request(static_cast<Request>(999), {}, {}, true), 1u);
    EXPECT_EQ(f.request(Request::SetLogBase, u64_bytes(0), {}, true), 1u)
        << "LOG_SHMFD was never offered";
    expect_serving(f);
}

TEST(Malformed, WrongFdCounts_FailAckAndKeepServing)
{
    auto backend = BackendProcess::listen();
    auto f = acking_frontend(backend);
    auto efd = make_eventfd().release_value();
    int fd = efd.get();
    int two[2] = { fd, fd };

    EXPECT_EQ(f.request(Request::SetOwner, {}, std::span(&fd, 1), true), 1u)
        << "SET_OWNER takes no fd";
    EXPECT_EQ(f.request(Request::SetVringKick, u64_bytes(0), {}, true), 1u)
        << "kick without fd and without NOFD";
    EXPECT_EQ(f.request(Request::SetVringCall, u64_bytes(0 | vhost::VRING_NOFD_MASK),
                  std::span(&fd, 1), true),
        1u);
    vhost::SingleMemoryRegion region { 0, { 0, 4096, 0x10000, 0 } };
    EXPECT_EQ(f.request_obj(Request::AddMemReg, region, two, true), 1u);
    EXPECT_EQ(f.request_obj(Request::AddMemReg, region, {}, true), 1u);
    expect_serving(f);
}

TEST(Malformed, MandatoryReplyThatCannotBeGiven_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    // GET_VRING_BASE for a queue that does not exist: no honest answer exists.
    f.request_obj(Request::GetVringBase, vhost::VringState { 7, 0 });
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, GetConfigOutsideConfigSpace_ClosesConnection)
{
    auto backend = BackendProcess::listen();
    auto f = Frontend::connect(backend.socket_path());
    std::byte payload[sizeof(vhost::ConfigHeader) + 8] {};
    vhost::ConfigHeader h { 12, 8, 0 };
    std::memcpy(payload, &h, sizeof(h));
    f.send_raw({ uint32_t(Request::GetConfig), vhost::VERSION, sizeof(payload) }, payload);
    expect_closed_then_recovers(f, backend);
}

TEST(Malformed, VringSetupErrors_FailAck)
{
    auto backend = BackendProcess::listen();
    auto f = acking_frontend(backend);
    EXPECT_EQ(f.request_obj(Request::SetVringNum, vhost::VringState { 0, 100 }, {}, true), 1u)
        << "not a power of 2";
    EXPECT_EQ(f.request_obj(Request::SetVringNum, vhost::VringState { 0, 2048 }, {}, true), 1u)
        << "above 1024";
    EXPECT_EQ(f.request_obj(Request::SetVringNum, vhost::VringState { 5, 64 }, {}, true), 1u)
        << "no queue 5";
    EXPECT_EQ(f.request_obj(Request::SetVringBase, vhost::VringState { 0, 0x10000 }, {}, true), 1u);
    EXPECT_EQ(f.request_obj(Request::SetVringAddr,
                  vhost::VringAddr { 0, 0, 0x1001, 0x2000, 0x3000, 0 }, {}, true),
        1u)
        << "misaligned descriptor table";
    EXPECT_EQ(f.request_obj(Request::SetVringNum, vhost::VringState { 0, 256 }, {}, true), 0u);
    expect_serving(f);
}

// ---- memory tables --------------------------------------------------------------------------

TEST(Malformed, SetMemTableOverlappingOrZeroSized_FailsAndKeepsOldTable)
{
    auto backend = BackendProcess::listen({ "--no-configure-mem-slots" });
    QemuSession session(backend.socket_path());
    session.start();
    auto& f = session.frontend();
    int fd = session.ram().fd().get();
    auto table = [&](std::vector<vhost::MemoryRegion> regions) {
        std::vector<std::byte> payload(8 + regions.size() * sizeof(vhost::MemoryRegion));
        vhost::MemoryTableHeader h { uint32_t(regions.size()), 0 };
        std::memcpy(payload.data(), &h, 8);
        std::memcpy(
            payload.data() + 8, regions.data(), regions.size() * sizeof(vhost::MemoryRegion));
        std::vector<int> fds(regions.size(), fd);
        return f.request(Request::SetMemTable, payload, fds, true);
    };
    uint64_t va = session.ram().frontend_va(0);

    EXPECT_EQ(table({ { 0, 1 << 20, va, 0 }, { 1 << 19, 1 << 20, va + (2 << 20), 2 << 20 } }), 1u)
        << "GPA overlap";
    EXPECT_EQ(table({ { 0, 1 << 20, va, 0 }, { 8 << 20, 1 << 20, va + (1 << 19), 1 << 20 } }), 1u)
        << "VA overlap";
    EXPECT_EQ(table({ { 0, 0, va, 0 } }), 1u) << "zero size";
    EXPECT_EQ(table({ { 0, 1ull << 40, va, 0 } }), 1u) << "larger than the memfd";
    EXPECT_EQ(table({ { ~0ull - 10, 4096, va, 0 } }), 1u) << "wraps";

    // The rings still live in the old table.
    expect_control_round_trip(session);
}

TEST(Malformed, AddMemRegOverlapping_FailsAndKeepsServing)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    int fd = session.ram().fd().get();
    vhost::SingleMemoryRegion again { 0, { 4096, 4096, 0x7000'0000'0000, 4096 } };
    EXPECT_EQ(
        session.frontend().request_obj(Request::AddMemReg, again, std::span(&fd, 1), true), 1u);
    vhost::SingleMemoryRegion missing { 0, { 1ull << 40, 4096, 0x7100'0000'0000, 0 } };
    EXPECT_EQ(session.frontend().request_obj(Request::RemMemReg, missing, {}, true), 1u);
    expect_control_round_trip(session);
}

// ---- rings and descriptors from a hostile guest --------------------------------------------

class HostileGuest : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_backend.emplace(BackendProcess::listen());
        m_session.emplace(m_backend->socket_path());
        m_session->start();
    }
    // The bad chain completes with length 0 and the next good command works.
    void expect_rejected_then_serving(uint16_t head)
    {
        auto& q = m_session->control();
        q.make_available(head);
        q.notify_kick();
        auto used = q.wait_used();
        ASSERT_TRUE(used.has_value()) << "a malformed chain must still be returned";
        EXPECT_EQ(used->id, head);
        EXPECT_EQ(used->length, 0u);
        expect_control_round_trip(*m_session);
        EXPECT_TRUE(m_backend->alive());
    }
    uint64_t request_buffer()
    {
        auto hdr = ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo);
        uint64_t gpa = m_session->ram().alloc(hdr.size());
        m_session->ram().write(gpa, hdr);
        return gpa;
    }
    std::optional<BackendProcess> m_backend;
    std::optional<QemuSession> m_session;
};

using virtio::VIRTQ_DESC_F_INDIRECT;
using virtio::VIRTQ_DESC_F_NEXT;
using virtio::VIRTQ_DESC_F_WRITE;

TEST_F(HostileGuest, DescriptorLoop_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    uint64_t req = request_buffer();
    q.write_desc(200, { req, 24, VIRTQ_DESC_F_NEXT, 201 });
    q.write_desc(201, { req, 24, VIRTQ_DESC_F_NEXT, 200 });
    expect_rejected_then_serving(200);
    EXPECT_NE(m_backend->log().find("longer than"), std::string::npos) << m_backend->log();
}

TEST_F(HostileGuest, DescriptorIndexOutOfTable_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    q.write_desc(210, { request_buffer(), 24, VIRTQ_DESC_F_NEXT, 4000 });
    expect_rejected_then_serving(210);
}

TEST_F(HostileGuest, BufferOutsideGuestMemory_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    q.write_desc(211, { 0x7000'0000'0000, 24, 0, 0 });
    expect_rejected_then_serving(211);
}

TEST_F(HostileGuest, BufferStraddlingTheEndOfRam_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    q.write_desc(212, { m_session->ram().low_size() - 8, 24, 0, 0 });
    expect_rejected_then_serving(212);
}

TEST_F(HostileGuest, IndirectTableOutsideMemory_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    q.write_desc(213, { 0x7000'0000'0000, 64, VIRTQ_DESC_F_INDIRECT, 0 });
    expect_rejected_then_serving(213);
}

TEST_F(HostileGuest, IndirectTableBadLength_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    uint64_t table = m_session->ram().alloc(64, 16);
    q.write_desc(214, { table, 17, VIRTQ_DESC_F_INDIRECT, 0 });
    expect_rejected_then_serving(214);
}

TEST_F(HostileGuest, IndirectTableWithLoop_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    auto& ram = m_session->ram();
    uint64_t table = ram.alloc(32, 16);
    uint64_t req = request_buffer();
    ram.put(table, virtio::VirtqDesc { req, 24, VIRTQ_DESC_F_NEXT, 1 });
    ram.put(table + 16, virtio::VirtqDesc { req, 24, VIRTQ_DESC_F_NEXT, 0 });
    q.write_desc(215, { table, 32, VIRTQ_DESC_F_INDIRECT, 0 });
    expect_rejected_then_serving(215);
}

TEST_F(HostileGuest, NestedIndirect_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    auto& ram = m_session->ram();
    uint64_t inner = ram.alloc(16, 16);
    ram.put(inner, virtio::VirtqDesc { request_buffer(), 24, 0, 0 });
    uint64_t outer = ram.alloc(16, 16);
    ram.put(outer, virtio::VirtqDesc { inner, 16, VIRTQ_DESC_F_INDIRECT, 0 });
    q.write_desc(216, { outer, 16, VIRTQ_DESC_F_INDIRECT, 0 });
    expect_rejected_then_serving(216);
}

TEST_F(HostileGuest, ReadableAfterWritable_ReturnedWithLengthZero)
{
    auto& q = m_session->control();
    uint64_t resp = m_session->ram().alloc(64);
    q.write_desc(217, { resp, 64, uint16_t(VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT), 218 });
    q.write_desc(218, { request_buffer(), 24, 0, 0 });
    expect_rejected_then_serving(217);
}

TEST_F(HostileGuest, HeadIndexOutOfRange_ReturnedWithLengthZero)
{
    // The driver gave an id that is not a descriptor: it gets it back, marked as carrying nothing.
    expect_rejected_then_serving(uint16_t(m_session->control().size() + 5));
}

TEST_F(HostileGuest, CommandShorterThanHeader_AnsweredWithError)
{
    auto response = m_session->control_round_trip(std::vector<std::byte>(10));
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(parse_header(*response).type, uint32_t(virtio_gpu::CtrlType::ErrUnspec));
}

TEST_F(HostileGuest, NoRoomForResponse_CompletesWithLengthZero)
{
    auto& q = m_session->control();
    q.add({ { request_buffer(), 24, false } });
    q.notify_kick();
    auto used = q.wait_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 0u);
    expect_control_round_trip(*m_session);
}

TEST_F(HostileGuest, AvailIndexJumpsPastQueueSize_StopsQueueUntilReset)
{
    auto& q = m_session->control();
    q.set_avail_idx(uint16_t(q.avail_idx() + q.size() + 1));
    q.notify_kick();
    EXPECT_FALSE(q.wait_used(std::chrono::milliseconds(300)).has_value())
        << "a broken queue must stop";
    // The cursor queue is independent and still serves.
    expect_cursor_round_trip(*m_session);
    EXPECT_NE(m_backend->log().find("queue stopped until reset"), std::string::npos)
        << m_backend->log();

    // A device reset and a driver that sets the rings up again (a rebooting guest) bring it back.
    m_session->reset_and_reinit();
    expect_control_round_trip(*m_session);
}

TEST_F(HostileGuest, RingAddressesOutsideMemory_QueueDoesNotStart)
{
    auto& f = m_session->frontend();
    f.request_obj(Request::GetVringBase, vhost::VringState { 0, 0 });
    ASSERT_TRUE(f.read_reply().has_value()); // the GET_VRING_BASE answer: the ring is stopped
    vhost::VringAddr bad { 0, 0, 0x7000'0000'0000, 0x7000'0001'0000, 0x7000'0002'0000, 0 };
    f.request_obj(Request::SetVringAddr, bad);
    auto kick = make_eventfd().release_value();
    int k = kick.get();
    // Starting the ring fails: the kick is refused with an error ack.
    EXPECT_EQ(f.request_obj(Request::SetVringKick, uint64_t(0), std::span(&k, 1), true), 1u);
    expect_serving(f);
    expect_cursor_round_trip(*m_session);
}

} // namespace vgpu::integration
