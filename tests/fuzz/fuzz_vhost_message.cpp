// libFuzzer target for the vhost-user message parser: vhost::validate_header, then
// vhost::decode_request. Input: [fd count: 1 byte, mod 9] [Header: 12 bytes] [payload].
// As on the socket, the payload is exactly header.size bytes: a shorter input is a message still
// in flight and is dropped, a longer one is truncated.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <variant>

#include "vhost/message.h"

namespace {

using namespace vgpu;
using namespace vgpu::vhost;

// The decoder's documented contract, checked on every accepted request: a violation is a parser
// bug and must show as a crash, in release builds too (so not assert()).
#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(stderr, "fuzz_vhost_message: check failed: %s (%s:%d)\n", #expression,    \
                __FILE__, __LINE__);                                                               \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

void check_accepted(const Header& header, const DecodedRequest& request,
    std::span<const std::byte> payload, size_t fd_count)
{
    FUZZ_CHECK(request_name(header.request) != "UNKNOWN");
    FUZZ_CHECK(payload.size() <= MAX_PAYLOAD);
    if (const auto* table = std::get_if<req::SetMemTable>(&request)) {
        FUZZ_CHECK(table->regions.size() == fd_count);
        FUZZ_CHECK(fd_count >= 1 && fd_count <= MAX_FDS);
        return;
    }
    // Only SET_MEM_TABLE carries more than one descriptor.
    FUZZ_CHECK(fd_count <= 1);
    if (const auto* vring = std::get_if<req::SetVringFd>(&request))
        FUZZ_CHECK(vring->has_fd == (fd_count == 1) && vring->index <= VRING_INDEX_MASK);
    if (const auto* get = std::get_if<req::GetConfig>(&request))
        FUZZ_CHECK(
            get->size <= MAX_CONFIG_SIZE && payload.size() == sizeof(ConfigHeader) + get->size);
    if (const auto* set = std::get_if<req::SetConfig>(&request))
        FUZZ_CHECK(set->data.size() <= MAX_CONFIG_SIZE
            && payload.size() == sizeof(ConfigHeader) + set->data.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1 + sizeof(Header))
        return 0;
    size_t fd_count = data[0] % (MAX_FDS + 1);
    Header header;
    std::memcpy(&header, data + 1, sizeof(header));
    auto rest = std::as_bytes(std::span(data + 1 + sizeof(header), size - 1 - sizeof(header)));

    (void)request_name(header.request);
    (void)has_mandatory_reply(header.request);
    if (!validate_header(header))
        return 0;
    if (rest.size() < header.size)
        return 0;
    auto payload = rest.first(header.size);
    auto request = decode_request(header, payload, fd_count);
    if (request)
        check_accepted(header, *request, payload, fd_count);
    return 0;
}
