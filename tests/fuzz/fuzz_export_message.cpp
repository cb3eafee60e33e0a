// libFuzzer target for the export socket's packet checks (export/codec.h): what a consumer sends
// is untrusted. Input: [descriptor count: 1 byte, low 3 bits, 0..4 used] [the packet]. A packet
// that parses as a known type must encode back to exactly the same bytes, and its text fields
// must read back NUL-free and within their size.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "export/codec.h"

namespace {

using namespace vgpu;
using namespace vgpu::exporting;

#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(stderr, "fuzz_export_message: check failed: %s (%s:%d)\n", #expression,   \
                __FILE__, __LINE__);                                                               \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

template <Body T>
void round_trip(const Message& m, std::span<const std::byte> packet)
{
    auto body = m.as<T>();
    FUZZ_CHECK(body.has_value());
    auto again = encode(*body, m.header.serial);
    FUZZ_CHECK(again.size() == packet.size());
    FUZZ_CHECK(std::memcmp(again.data(), packet.data(), packet.size()) == 0);
}

template <size_t N>
void check_text(const std::array<char, N>& field)
{
    auto text = get_text(field);
    FUZZ_CHECK(text.size() < N + 1);
    FUZZ_CHECK(text.find('\0') == std::string::npos);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
        return 0;
    size_t wanted_fds = data[0] & 7;
    if (wanted_fds > MAX_FDS)
        wanted_fds = MAX_FDS;
    std::vector<Fd> fds;
    for (size_t i = 0; i < wanted_fds; ++i)
        fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    auto packet = std::as_bytes(std::span(data + 1, size - 1));
    auto m = parse(packet, std::move(fds));
    if (!m) {
        FUZZ_CHECK(!m.error().reason.empty());
        return 0;
    }
    FUZZ_CHECK(m->header.magic == MAGIC);
    FUZZ_CHECK(m->header.size == packet.size());
    if (!m->known) {
        FUZZ_CHECK(!body_size(m->header.type).has_value());
        FUZZ_CHECK(m->fds.empty());
        return 0;
    }
    FUZZ_CHECK(m->fds.size() == fd_count(m->header.type));
    switch (m->type()) {
    case Type::Hello:
        round_trip<Hello>(*m, packet);
        check_text(m->as<Hello>()->name);
        break;
    case Type::Welcome:
        round_trip<Welcome>(*m, packet);
        break;
    case Type::Probe:
        round_trip<Probe>(*m, packet);
        break;
    case Type::ProbeReply:
        round_trip<ProbeReply>(*m, packet);
        break;
    case Type::OutputInfo:
        round_trip<OutputInfo>(*m, packet);
        break;
    case Type::Lease:
        round_trip<Lease>(*m, packet);
        break;
    case Type::Leased:
        round_trip<Leased>(*m, packet);
        break;
    case Type::Release:
        round_trip<Release>(*m, packet);
        break;
    case Type::Buffer:
        round_trip<Buffer>(*m, packet);
        break;
    case Type::Extents:
        round_trip<Extents>(*m, packet);
        break;
    case Type::BufferGone:
        round_trip<BufferGone>(*m, packet);
        break;
    case Type::Flip: {
        round_trip<Flip>(*m, packet);
        auto f = *m->as<Flip>();
        FUZZ_CHECK(f.rects >= 1 && f.rects <= FLIP_RECTS && f.covers >= 1);
        break;
    }
    case Type::Crc:
        round_trip<Crc>(*m, packet);
        break;
    case Type::Cursor:
        round_trip<Cursor>(*m, packet);
        break;
    case Type::Mode:
        round_trip<Mode>(*m, packet);
        break;
    case Type::Revoked:
        round_trip<Revoked>(*m, packet);
        break;
    case Type::Ack:
        round_trip<Ack>(*m, packet);
        break;
    case Type::Error:
        round_trip<ErrorReply>(*m, packet);
        check_text(m->as<ErrorReply>()->text);
        break;
    }
    return 0;
}
