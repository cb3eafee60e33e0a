// The export protocol's codec: every type round-trips, and every malformed packet is refused
// with a reason (docs/export.md, "Transport").
#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "export/codec.h"
#include "export/describe.h"

namespace vgpu::exporting {
namespace {

std::vector<Fd> no_fds() { return {}; }

std::vector<Fd> one_fd()
{
    std::vector<Fd> fds;
    fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    return fds;
}

template <Body T>
Message parsed(const T& body, uint32_t serial = 7)
{
    auto packet = encode(body, serial);
    std::vector<Fd> fds = T::fds ? one_fd() : no_fds();
    auto m = parse(packet, std::move(fds));
    EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().reason);
    return m ? std::move(m.value()) : Message {};
}

std::string refusal(std::span<const std::byte> packet, std::vector<Fd> fds = {})
{
    auto m = parse(packet, std::move(fds));
    if (m)
        return "accepted";
    EXPECT_EQ(m.error().code, ErrorCode::BadMessage);
    return m.error().reason;
}

TEST(ExportCodec, EveryType_RoundTrips_WithItsSerial)
{
    Hello hello { VERSION_MAJOR, VERSION_MINOR, {} };
    set_text(hello.name, "vgpu-view");
    auto m = parsed(hello, 42);
    ASSERT_TRUE(m.known);
    EXPECT_EQ(m.header.serial, 42u);
    EXPECT_EQ(m.header.size, sizeof(Header) + sizeof(Hello));
    EXPECT_EQ(get_text(m.as<Hello>()->name), "vgpu-view");
    EXPECT_FALSE(m.as<Welcome>().has_value()) << "a body is only its own type";

    Flip flip {};
    flip.lease = 3;
    flip.buffer = 9;
    flip.generation = 1ull << 40;
    flip.covers = 5;
    flip.rects = 2;
    flip.source = { 1280, 32, 1024, 768 };
    flip.damage[1] = { 10, 20, 30, 40 };
    auto f = parsed(flip).as<Flip>();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->generation, 1ull << 40);
    EXPECT_EQ(f->covers, 5u);
    EXPECT_EQ(f->source.x, 1280u);
    EXPECT_EQ(f->damage[1].height, 40u);

    Buffer buffer {};
    buffer.plane_type = PLANE_GUEST_MEMORY;
    buffer.extents = 3;
    buffer.size = 1ull << 33;
    auto b = parsed(buffer);
    EXPECT_EQ(b.fds.size(), 1u);
    EXPECT_EQ(b.as<Buffer>()->size, 1ull << 33);

    // The rest, with valid enum fields.
    EXPECT_TRUE(parsed(Welcome { 1, 0, 4, 0 }).known);
    EXPECT_TRUE(parsed(Probe {}).known);
    EXPECT_TRUE(parsed(ProbeReply { PLANE_REGION | PLANE_DMABUF, 4, PROBE_CRC, 20 }).known);
    EXPECT_TRUE(parsed(OutputInfo { 3, 1, 640, 480, 0x34325258, 0, 12 }).known);
    EXPECT_TRUE(parsed(Lease { 0, uint32_t(LeaseKind::Shared), PLANE_REGION, 0 }).known);
    EXPECT_TRUE(parsed(Leased { 1, 0, uint32_t(LeaseKind::Exclusive), PLANE_REGION }).known);
    EXPECT_TRUE(parsed(Release { 1, 0 }).known);
    Extents extents {};
    extents.count = 16;
    EXPECT_TRUE(parsed(extents).known);
    EXPECT_TRUE(parsed(BufferGone { 1, 2 }).known);
    EXPECT_TRUE(parsed(Crc { 1, 0xdeadbeef, 9 }).known);
    EXPECT_TRUE(parsed(Cursor { 1, 5, 10, 20, 1, 2, 1, 0 }).known);
    EXPECT_TRUE(parsed(Mode { 1, 0, 0, 0, 0, 0 }).known);
    EXPECT_TRUE(parsed(Revoked { 1, uint32_t(RevokeReason::NoAck) }).known);
    EXPECT_TRUE(parsed(Ack { 1, 0, 99 }).known);
    ErrorReply error { uint32_t(ErrorCode::Busy), 7, {} };
    set_text(error.text, std::string(100, 'x'));
    auto e = parsed(error).as<ErrorReply>();
    EXPECT_EQ(get_text(e->text).size(), ERROR_TEXT_BYTES - 1) << "cut to fit, NUL-terminated";
}

TEST(ExportDescribe, Records_PrintAsOneLineEach)
{
    Flip flip {};
    flip.lease = 1;
    flip.buffer = 2;
    flip.generation = 40;
    flip.covers = 3;
    flip.rects = 2;
    flip.damage[0] = { 0, 0, 64, 32 };
    flip.damage[1] = { 10, 20, 30, 40 };
    EXPECT_EQ(record_line(parsed(flip)),
        "flip generation=40 covers=3 buffer=2 damage=0,0,64x32;10,20,30x40");
    EXPECT_EQ(record_line(parsed(Crc { 1, 0xdeadbeef, 41 })), "crc generation=41 0xdeadbeef");
    Buffer buffer {};
    buffer.lease = 1;
    buffer.buffer = 5;
    buffer.plane_type = PLANE_REGION;
    buffer.fourcc = 0x34325258; // XR24
    buffer.width = 640;
    buffer.height = 480;
    buffer.stride = 2560;
    buffer.size = 2560 * 480;
    EXPECT_EQ(
        record_line(parsed(buffer)), "buffer 5 640x480 XR24 stride=2560 size=1228800 plane=region");
    EXPECT_EQ(record_line(parsed(Mode { 1, 0, 1, 1024, 768, 0 })), "mode 1024x768");
    EXPECT_EQ(record_line(parsed(Mode { 1, 0, 0, 0, 0, 0 })), "mode disabled");
    EXPECT_EQ(
        record_line(parsed(Revoked { 1, uint32_t(RevokeReason::NoAck) })), "revoked reason=no-ack");
    EXPECT_EQ(record_line(parsed(Cursor { 1, 3, 100, 200, 4, 5, 1, 0 })),
        "cursor buffer=3 at 100,200 hot 4,5 moved");
    EXPECT_EQ(fourcc_name(0x01020358), "X???");
    EXPECT_EQ(plane_type_names(PLANE_REGION | PLANE_GUEST_MEMORY), "region,guest-memory");
    EXPECT_EQ(plane_type_names(0), "none");
    EXPECT_EQ(plane_type_list(ALL_PLANE_TYPES),
        (std::vector<std::string> { "region", "dmabuf", "guest-memory" }));
    for (auto [bit, name] : PLANE_TYPE_NAMES)
        EXPECT_EQ(plane_type_named(name), bit) << name;
    EXPECT_EQ(plane_type_named("Region"), std::nullopt);
    EXPECT_EQ(plane_type_named(""), std::nullopt);
}

TEST(ExportCodec, HeaderErrors_AreRefusedWithTheirReason)
{
    auto good = encode(Probe {}, 1);
    EXPECT_NE(refusal(std::span(good).first(15)).find("shorter than the 16-byte header"),
        std::string::npos);

    auto magic = good;
    magic[0] = std::byte('X');
    EXPECT_NE(refusal(magic).find("magic"), std::string::npos);

    auto longer = good;
    longer.push_back(std::byte(0));
    EXPECT_NE(refusal(longer).find("size field 20 in a 21-byte packet"), std::string::npos);

    auto flags = good;
    flags[6] = std::byte(1);
    EXPECT_NE(refusal(flags).find("flags"), std::string::npos);

    // A known type with another body size (the size field agrees with the packet).
    Header h { MAGIC, uint16_t(Type::Probe), 0, uint32_t(sizeof(Header) + 8), 1 };
    std::vector<std::byte> odd(sizeof(Header) + 8);
    std::memcpy(odd.data(), &h, sizeof(h));
    EXPECT_NE(refusal(odd).find("PROBE with a 8-byte body, not 4"), std::string::npos);
}

TEST(ExportCodec, Descriptors_MustBeExactlyThoseTheTypeCarries)
{
    auto probe = encode(Probe {}, 1);
    EXPECT_NE(refusal(probe, one_fd()).find("PROBE with 1 descriptors, not 0"), std::string::npos);
    auto leased = encode(Leased { 1, 0, 1, PLANE_REGION }, 1);
    EXPECT_NE(refusal(leased).find("LEASED with 0 descriptors, not 1"), std::string::npos);
}

TEST(ExportCodec, UnknownType_PassesUnknown_UnlessItCarriesDescriptors)
{
    Header h { MAGIC, 999, 0, uint32_t(sizeof(Header) + 12), 5 };
    std::vector<std::byte> packet(sizeof(Header) + 12);
    std::memcpy(packet.data(), &h, sizeof(h));
    auto m = parse(packet, {});
    ASSERT_TRUE(m.has_value());
    EXPECT_FALSE(m->known);
    EXPECT_EQ(m->header.serial, 5u);
    EXPECT_NE(
        refusal(packet, one_fd()).find("unknown type 999 with descriptors"), std::string::npos);
    EXPECT_STREQ(type_name(999), "unknown");
    EXPECT_FALSE(body_size(0).has_value());
    EXPECT_EQ(body_size(uint16_t(Type::Flip)).value(), sizeof(Flip));
}

TEST(ExportCodec, BodyRules_ReservedFieldsEnumsAndCounts)
{
    struct Case {
        std::vector<std::byte> packet;
        std::vector<Fd> fds;
        const char* reason;
    };
    std::vector<Case> cases;
    cases.push_back({ encode(Probe { 1 }, 1), {}, "PROBE: reserved field set" });
    cases.push_back({ encode(Lease { 0, 3, PLANE_REGION, 0 }, 1), {}, "kind is neither" });
    cases.push_back({ encode(Lease { 0, 1, PLANE_REGION | PLANE_DMABUF, 0 }, 1), {},
        "plane_type is not one known plane type" });
    cases.push_back({ encode(Lease { 0, 1, 1u << 5, 0 }, 1), {}, "plane_type is not one" });
    cases.push_back({ encode(Ack { 1, 2, 3 }, 1), {}, "ACK: reserved field set" });
    Buffer region_with_extents {};
    region_with_extents.plane_type = PLANE_REGION;
    region_with_extents.extents = 1;
    cases.push_back({ encode(region_with_extents, 1), one_fd(), "extents for a plane" });
    Extents none {};
    cases.push_back({ encode(none, 1), {}, "count outside 1..16" });
    Flip no_rects {};
    no_rects.covers = 1;
    cases.push_back({ encode(no_rects, 1), {}, "rects outside 1..8" });
    Flip nine = no_rects;
    nine.rects = 9;
    cases.push_back({ encode(nine, 1), {}, "rects outside 1..8" });
    Flip uncovered = no_rects;
    uncovered.rects = 1;
    uncovered.covers = 0;
    cases.push_back({ encode(uncovered, 1), {}, "covers is 0" });
    cases.push_back({ encode(Mode { 1, 0, 2, 0, 0, 0 }, 1), {}, "enabled is neither" });
    cases.push_back({ encode(Revoked { 1, 6 }, 1), {}, "unknown reason" });
    cases.push_back({ encode(ErrorReply { 0, 0, {} }, 1), {}, "unknown error code" });
    cases.push_back({ encode(ProbeReply { 1u << 7, 1, 0, 20 }, 1), {}, "unknown plane type bits" });
    cases.push_back({ encode(ProbeReply { 1, 17, 0, 20 }, 1), {}, "more than 16 outputs" });
    for (auto& c : cases) {
        SCOPED_TRACE(c.reason);
        EXPECT_NE(refusal(c.packet, std::move(c.fds)).find(c.reason), std::string::npos);
    }
}

class ExportSocket : public ::testing::Test {
protected:
    void SetUp() override
    {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        a = Fd(sv[0]);
        b = Fd(sv[1]);
    }
    Fd a, b;
};

TEST_F(ExportSocket, PacketsAndDescriptors_ArriveWhole_EmptySocketIsNotAnError)
{
    auto none = receive_packet(b.get());
    ASSERT_TRUE(none.has_value());
    EXPECT_EQ(none->state, Received::State::Empty);

    Fd event(::eventfd(5, EFD_CLOEXEC));
    int raw = event.get();
    auto packet = encode(Leased { 4, 1, 2, PLANE_REGION }, 3);
    ASSERT_EQ(send_packet(a.get(), packet, std::span(&raw, 1)).value(), true);
    auto got = receive_packet(b.get());
    ASSERT_TRUE(got.has_value());
    ASSERT_EQ(got->state, Received::State::Packet);
    auto& bytes = got->bytes;
    auto& fds = got->fds;
    EXPECT_EQ(bytes, packet);
    ASSERT_EQ(fds.size(), 1u);
    uint64_t count = 0;
    ASSERT_EQ(::read(fds[0].get(), &count, sizeof(count)), ssize_t(sizeof(count)));
    EXPECT_EQ(count, 5u) << "the same eventfd";
    auto message = parse(bytes, std::move(fds));
    ASSERT_TRUE(message.has_value());
    EXPECT_EQ(message->as<Leased>()->lease, 4u);
}

TEST_F(ExportSocket, TooLongPacket_IsAnError_PeerGoneIsClosed)
{
    std::vector<std::byte> big(MAX_PACKET + 100, std::byte(1));
    ASSERT_EQ(send_packet(a.get(), big, {}).value(), true);
    auto got = receive_packet(b.get());
    ASSERT_FALSE(got.has_value());
    EXPECT_NE(got.error().message.find("longer than"), std::string::npos);
    a.reset();
    auto closed = receive_packet(b.get());
    ASSERT_TRUE(closed.has_value());
    EXPECT_EQ(closed->state, Received::State::Closed);
}

TEST_F(ExportSocket, FullSocket_SendSaysFalse_NeverBlocks)
{
    auto packet = encode(Flip { 1, 1, 1, 1, 1, {}, {}, 0 }, 1);
    size_t sent = 0;
    for (; sent < 100000; ++sent) {
        auto r = send_packet(a.get(), packet, {});
        ASSERT_TRUE(r.has_value()) << r.error().message;
        if (!*r)
            break;
    }
    EXPECT_LT(sent, 100000u) << "the socket never filled";
    EXPECT_GT(sent, 0u);
}

} // namespace
} // namespace vgpu::exporting
