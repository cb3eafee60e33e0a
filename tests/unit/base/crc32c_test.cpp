#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "base/crc32c.h"

namespace vgpu::crc {
namespace {

std::span<const std::byte> bytes(std::string_view s)
{
    return std::as_bytes(std::span(s.data(), s.size()));
}

// A bit-by-bit reference, independent of the implementation's tables and instructions.
uint32_t reference(std::span<const std::byte> data)
{
    uint32_t crc = 0xFFFFFFFF;
    for (auto b : data) {
        crc ^= uint8_t(b);
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
    }
    return ~crc;
}

std::vector<std::byte> random_bytes(size_t n, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::vector<std::byte> out(n);
    for (auto& b : out)
        b = std::byte(rng() & 0xff);
    return out;
}

TEST(Crc32c, CheckValue_MatchesTheStandard)
{
    EXPECT_EQ(crc32c(0, bytes("123456789")), 0xE3069283u);
    EXPECT_EQ(crc32c(0, {}), 0u);
}

TEST(Crc32c, AllLengthsAndAlignments_MatchTheBitwiseReference)
{
    auto data = random_bytes(5000, 1);
    for (size_t offset : { 0u, 1u, 3u, 7u })
        for (size_t length : { 0u, 1u, 7u, 8u, 9u, 63u, 767u, 768u, 769u, 2048u, 4093u })
            EXPECT_EQ(crc32c(0, std::span(data).subspan(offset, length)),
                reference(std::span(data).subspan(offset, length)))
                << "offset " << offset << " length " << length;
}

TEST(Crc32c, Incremental_EqualsOneShot)
{
    auto data = random_bytes(10000, 2);
    uint32_t crc = crc32c(0, std::span(data).first(3333));
    crc = crc32c(crc, std::span(data).subspan(3333));
    EXPECT_EQ(crc, crc32c(0, data));
}

TEST(Crc32c, Combine_EqualsTheCrcOfTheConcatenation)
{
    auto data = random_bytes(9000, 3);
    for (size_t split : { 0u, 1u, 100u, 4096u, 8999u, 9000u }) {
        uint32_t a = crc32c(0, std::span(data).first(split));
        uint32_t b = crc32c(0, std::span(data).subspan(split));
        EXPECT_EQ(crc32c_combine(a, b, data.size() - split), crc32c(0, data)) << "split " << split;
    }
}

TEST(Crc32c, Appender_JoinsRowsLikeOneBuffer)
{
    constexpr size_t row = 7680, rows = 20;
    auto data = random_bytes(row * rows, 4);
    Appender appender(row);
    uint32_t crc = 0;
    for (size_t r = 0; r < rows; ++r)
        crc = appender.append(crc, crc32c(0, std::span(data).subspan(r * row, row)));
    EXPECT_EQ(crc, crc32c(0, data));
}

TEST(Crc32cXrgb, TopByteIsIgnored_XrgbAndArgbGiveOneValue)
{
    std::vector<uint32_t> xrgb(1920), argb(1920);
    for (size_t i = 0; i < xrgb.size(); ++i) {
        uint32_t rgb = uint32_t(i * 2654435761u) & 0x00FFFFFF;
        xrgb[i] = rgb | 0x5A000000;
        argb[i] = rgb | (uint32_t(i) << 24);
    }
    EXPECT_EQ(crc32c_xrgb(0, xrgb.data(), xrgb.size()), crc32c_xrgb(0, argb.data(), argb.size()));
}

TEST(Crc32cXrgb, EqualsTheCrcOfCanonicalBytes)
{
    for (size_t count : { 1u, 2u, 3u, 191u, 1920u }) {
        std::vector<uint32_t> pixels(count);
        std::vector<std::byte> canonical(count * 4);
        for (size_t i = 0; i < count; ++i) {
            pixels[i] = uint32_t(i * 0x9E3779B9u);
            uint32_t c = pixels[i] & 0x00FFFFFF;
            std::memcpy(canonical.data() + 4 * i, &c, 4);
        }
        EXPECT_EQ(crc32c_xrgb(0, pixels.data(), count), reference(canonical)) << count;
    }
}

// The canonical CRC of pixels, bit by bit: each pixel's bytes B, G, R and a zero.
uint32_t canonical_reference(const uint32_t* pixels, size_t count)
{
    std::vector<std::byte> canonical(count * 4);
    for (size_t i = 0; i < count; ++i) {
        uint32_t c = pixels[i] & 0x00FFFFFF;
        std::memcpy(canonical.data() + 4 * i, &c, 4);
    }
    return reference(canonical);
}

// Every implementation, each in turn; the best one is restored afterwards. One this CPU lacks
// must be refused, leaving the one in use (the tests then check that one again).
class EachImplementation : public ::testing::TestWithParam<Implementation> {
protected:
    void SetUp() override
    {
        Implementation before = implementation();
        if (!use_implementation(GetParam())) {
            EXPECT_EQ(implementation(), before)
                << implementation_name(GetParam()) << " refused but the implementation changed";
            EXPECT_LT(int(before), int(GetParam()));
        }
    }
    void TearDown() override
    {
        use_implementation(Implementation::Avx512Clmul)
            || use_implementation(Implementation::Sse42);
    }
};

TEST_P(EachImplementation, Blocks_EachEqualsTheBitwiseReference_CopiedOrNot)
{
    // Block counts around the groups of 3 and 4; blocks that are and are not a multiple of 16
    // pixels (the folding path); unaligned source and destination.
    for (size_t block : { 1u, 3u, 16u, 32u, 128u, 129u, 256u })
        for (size_t blocks : { 0u, 1u, 2u, 3u, 4u, 5u, 7u, 9u })
            for (size_t misalign : { 0u, 1u }) {
                std::vector<uint32_t> storage(block * blocks + 1), copy(block * blocks + 1, 0);
                for (size_t i = 0; i < storage.size(); ++i)
                    storage[i] = uint32_t(i * 0x9E3779B9u + block);
                // Misaligned by 4 bytes: a whole pixel, as guest pages may start anywhere.
                const uint32_t* src = storage.data() + misalign;
                std::vector<uint32_t> out(blocks, 0xdeadbeef), out_copied(blocks, 0xdeadbeef);
                crc32c_xrgb_blocks(src, block, blocks, out.data());
                copy_crc32c_xrgb_blocks(
                    copy.data() + misalign, src, block, blocks, out_copied.data());
                for (size_t b = 0; b < blocks; ++b) {
                    uint32_t expected = canonical_reference(src + b * block, block);
                    EXPECT_EQ(out[b], expected) << block << " x " << blocks << " #" << b;
                    EXPECT_EQ(out_copied[b], expected) << block << " x " << blocks << " #" << b;
                }
                EXPECT_TRUE(std::equal(src, src + block * blocks, copy.data() + misalign));
            }
}

// A guest may draw into its backing while we copy it (normal with DIRTYFB): the source changes
// between the copy and the checksum. The CRC must be of the pixels stored, on every path.
void scribble_after_copy(const uint32_t* source, size_t pixels)
{
    // The source is the test's own vector: changing it is what a drawing guest does.
    auto* writable = const_cast<uint32_t*>(source);
    for (size_t i = 0; i < pixels; ++i)
        writable[i] ^= 0x00A5A5A5u;
}

TEST_P(EachImplementation, CopiedBlocks_SourceChangesAfterTheCopy_CrcIsOfTheStoredPixels)
{
    for (size_t block : { 3u, 16u, 128u, 129u })
        for (size_t blocks : { 1u, 3u, 4u, 8u, 9u }) {
            std::vector<uint32_t> source(block * blocks), stored(block * blocks, 0);
            for (size_t i = 0; i < source.size(); ++i)
                source[i] = uint32_t(i * 0x9E3779B9u + block);
            std::vector<uint32_t> out(blocks, 0xdeadbeef);
            crc::testing::set_after_copy_hook(&scribble_after_copy);
            copy_crc32c_xrgb_blocks(stored.data(), source.data(), block, blocks, out.data());
            crc::testing::set_after_copy_hook(nullptr);
            for (size_t b = 0; b < blocks; ++b)
                EXPECT_EQ(out[b], canonical_reference(stored.data() + b * block, block))
                    << implementation_name(implementation()) << ": " << block << " x " << blocks
                    << " #" << b;
            // The hook did change the source: the test would not notice a checksum of it.
            EXPECT_NE(source[0], stored[0]);
        }
}

TEST_P(EachImplementation, Xrgb_EqualsTheBitwiseReference)
{
    std::vector<uint32_t> pixels(3000);
    for (size_t i = 0; i < pixels.size(); ++i)
        pixels[i] = uint32_t(i * 0x85EBCA6Bu);
    for (size_t count : { 0u, 1u, 5u, 200u, 2999u })
        EXPECT_EQ(crc32c_xrgb(0, pixels.data(), count), canonical_reference(pixels.data(), count))
            << count;
}

INSTANTIATE_TEST_SUITE_P(Crc32c, EachImplementation,
    ::testing::Values(Implementation::Table, Implementation::Sse42, Implementation::Avx512Clmul),
    [](const auto& param_info) {
        auto i = param_info.param;
        return std::string(i == Implementation::Table ? "Table"
                : i == Implementation::Sse42          ? "Sse42"
                                                      : "Avx512Clmul");
    });

} // namespace
} // namespace vgpu::crc
