// libFuzzer target for the EDID generator: virtio_gpu::build_edid. Input (little-endian):
// [width: 2 bytes, low 13 bits] [height: 2 bytes, low 13 bits] [refresh_hz: 1 byte]
// [width_mm: 2 bytes, low 12 bits] [height_mm: 2 bytes, low 12 bits] [serial: 4 bytes] [name:
// rest]. The masks keep about half of the sizes valid, so that both the builder and its checks are
// reached.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string_view>

#include "virtio_gpu/edid.h"

namespace {

using namespace vgpu::virtio_gpu;

// The builder's documented contract: a violation must show as a crash, in release builds too
// (so not assert()).
#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(                                                                          \
                stderr, "fuzz_edid: check failed: %s (%s:%d)\n", #expression, __FILE__, __LINE__); \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

constexpr size_t FIXED_SIZE = 13;

uint32_t le(const uint8_t* data, size_t count)
{
    uint32_t value = 0;
    for (size_t i = 0; i < count; ++i)
        value |= uint32_t { data[i] } << (8 * i);
    return value;
}

void check_accepted(const EdidInfo& info, const std::vector<uint8_t>& edid)
{
    FUZZ_CHECK(edid.size() == EDID_BLOCK_SIZE);
    FUZZ_CHECK(std::accumulate(edid.begin(), edid.end(), 0u) % 256 == 0);
    FUZZ_CHECK(edid[0] == 0x00 && edid[1] == 0xFF && edid[7] == 0x00);
    FUZZ_CHECK(edid[18] == 1 && edid[19] == 4 && edid[126] == 0);
    FUZZ_CHECK(info.width >= 1 && info.width <= EDID_MAX_ACTIVE_SIZE);
    FUZZ_CHECK(info.height >= 1 && info.height <= EDID_MAX_ACTIVE_SIZE);
    FUZZ_CHECK(info.refresh_hz >= 1 && info.refresh_hz <= EDID_MAX_REFRESH_HZ);
    // The preferred timing (first descriptor, byte 54) holds exactly the requested mode.
    const uint8_t* timing = edid.data() + 54;
    FUZZ_CHECK((timing[0] | timing[1]) != 0);
    FUZZ_CHECK((timing[2] | uint32_t(timing[4] >> 4) << 8) == info.width);
    FUZZ_CHECK((timing[5] | uint32_t(timing[7] >> 4) << 8) == info.height);
    // Screen size in centimetres is never 0 (which would mean "unknown" or an aspect ratio).
    FUZZ_CHECK(edid[21] != 0 && edid[22] != 0);
    // The name descriptor (second, byte 72) holds the name cut to 13 characters without trailing
    // spaces, then a line feed if there is room, then spaces.
    std::string_view name = info.name.substr(0, std::min(info.name.size(), EDID_MAX_NAME_LENGTH));
    while (!name.empty() && name.back() == ' ')
        name.remove_suffix(1);
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(edid[72 + 3] == 0xFC);
    const auto text = edid.begin() + 72 + 5;
    FUZZ_CHECK(std::equal(name.begin(), name.end(), text));
    for (size_t i = name.size(); i < EDID_MAX_NAME_LENGTH; ++i)
        FUZZ_CHECK(text[static_cast<ptrdiff_t>(i)] == (i == name.size() ? 0x0A : 0x20));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < FIXED_SIZE)
        return 0;
    EdidInfo info {
        .width = le(data, 2) & 0x1FFF,
        .height = le(data + 2, 2) & 0x1FFF,
        .refresh_hz = data[4],
        .width_mm = le(data + 5, 2) & 0xFFF,
        .height_mm = le(data + 7, 2) & 0xFFF,
        .name = std::string_view(
            reinterpret_cast<const char*>(data + FIXED_SIZE), size - FIXED_SIZE),
        .serial = le(data + 9, 4),
    };
    auto edid = build_edid(info);
    if (edid)
        check_accepted(info, *edid);
    return 0;
}
