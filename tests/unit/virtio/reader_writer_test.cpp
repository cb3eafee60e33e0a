// Bounds-checked Reader and Writer over descriptor chain segments (virtio/reader_writer.h).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "harness/guest_ram.h"
#include "virtio/guest_memory.h"
#include "virtio/reader_writer.h"

namespace vgpu::virtio {
namespace {

using harness::GuestRam;

std::string as_string(std::span<const std::byte> bytes)
{
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::span<const std::byte> text(const char* s)
{
    return std::as_bytes(std::span(s, std::strlen(s)));
}

class ReaderWriterTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        for (const auto& region : ram.regions())
            ASSERT_TRUE(memory.add_region(region, ram.fd()).has_value());
        // Three segments: in low memory, in high memory, and in low memory again.
        first = ram.alloc(64);
        third = ram.alloc(64);
        segments = { { first, 4 }, { second, 5 }, { third, 3 } };
    }

    // Fills the three segments with "abcd", "efghi", "jkl".
    void fill_segments()
    {
        ram.write(first, text("abcd"));
        ram.write(second, text("efghi"));
        ram.write(third, text("jkl"));
    }

    std::string guest_string(uint64_t gpa, size_t length)
    {
        std::string out(length, '\0');
        ram.read(gpa, std::as_writable_bytes(std::span(out.data(), length)));
        return out;
    }

    GuestRam ram { 2 << 20, 1 << 20 };
    GuestMemory memory;
    uint64_t first = 0;
    uint64_t second = GuestRam::high_base + 0x100;
    uint64_t third = 0;
    std::vector<Segment> segments;
};

// ---- Reader ---------------------------------------------------------------------------------

TEST_F(ReaderWriterTest, Reader_New_RemainingIsTotalLength)
{
    Reader reader(memory, segments);

    EXPECT_EQ(reader.remaining(), 12u);
    EXPECT_EQ(reader.consumed(), 0u);
}

TEST_F(ReaderWriterTest, Reader_ReadAcrossAllSegments_ConcatenatesThem)
{
    fill_segments();
    Reader reader(memory, segments);
    std::array<std::byte, 12> out {};

    auto result = reader.read(out);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(as_string(out), "abcdefghijkl");
    EXPECT_EQ(reader.remaining(), 0u);
    EXPECT_EQ(reader.consumed(), 12u);
}

TEST_F(ReaderWriterTest, Reader_SeveralSmallReads_ContinueWhereThePreviousStopped)
{
    fill_segments();
    Reader reader(memory, segments);
    std::array<std::byte, 3> a {}, b {}, c {};

    ASSERT_TRUE(reader.read(a).has_value());
    ASSERT_TRUE(reader.read(b).has_value());
    ASSERT_TRUE(reader.read(c).has_value());

    EXPECT_EQ(as_string(a), "abc");
    EXPECT_EQ(as_string(b), "def");
    EXPECT_EQ(as_string(c), "ghi");
    EXPECT_EQ(reader.remaining(), 3u);
}

TEST_F(ReaderWriterTest, Reader_ReadObjStraddlingSegments_AssemblesTheObject)
{
    uint64_t value = 0x1122334455667788;
    std::array<std::byte, 8> bytes;
    std::memcpy(bytes.data(), &value, 8);
    ram.write(first, std::span(bytes).first(4));
    ram.write(second, std::span(bytes).subspan(4));
    Reader reader(memory, segments);

    auto object = reader.read_obj<uint64_t>();

    ASSERT_TRUE(object.has_value());
    EXPECT_EQ(*object, value);
    EXPECT_EQ(reader.consumed(), 8u);
}

TEST_F(ReaderWriterTest, Reader_ShortRead_FailsAndConsumesNothing)
{
    fill_segments();
    Reader reader(memory, segments);
    std::array<std::byte, 13> too_big {};

    auto result = reader.read(too_big);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(reader.remaining(), 12u);
    EXPECT_EQ(reader.consumed(), 0u);
}

TEST_F(ReaderWriterTest, Reader_AfterShortRead_NextReadStartsAtTheBeginning)
{
    fill_segments();
    Reader reader(memory, segments);
    std::array<std::byte, 13> too_big {};
    ASSERT_FALSE(reader.read(too_big).has_value());
    std::array<std::byte, 4> out {};

    auto result = reader.read(out);

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(as_string(out), "abcd");
}

TEST_F(ReaderWriterTest, Reader_ReadObjLargerThanChain_Fails)
{
    std::vector<Segment> small = { { first, 4 } };
    Reader reader(memory, small);

    auto object = reader.read_obj<uint64_t>();

    EXPECT_FALSE(object.has_value());
    EXPECT_EQ(reader.consumed(), 0u);
}

TEST_F(ReaderWriterTest, Reader_Skip_MovesAcrossSegments)
{
    fill_segments();
    Reader reader(memory, segments);
    std::array<std::byte, 6> out {};

    ASSERT_TRUE(reader.skip(6).has_value());
    auto result = reader.read(out);

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(as_string(out), "ghijkl");
    EXPECT_EQ(reader.consumed(), 12u);
}

TEST_F(ReaderWriterTest, Reader_SkipPastEnd_FailsAndConsumesNothing)
{
    Reader reader(memory, segments);

    auto result = reader.skip(13);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(reader.remaining(), 12u);
    EXPECT_EQ(reader.consumed(), 0u);
}

TEST_F(ReaderWriterTest, Reader_EmptyChain_ReadsNothingAndFailsOnOneByte)
{
    Reader reader(memory, {});
    std::array<std::byte, 1> out {};

    auto empty = reader.read(std::span(out).first(0));
    auto one = reader.read(out);

    EXPECT_TRUE(empty.has_value());
    EXPECT_FALSE(one.has_value());
}

TEST_F(ReaderWriterTest, Reader_SegmentOutsideGuestMemory_FailsAndKeepsPosition)
{
    // A segment that is no longer guest memory (the table changed after the chain was walked):
    // the failed read must not move the reader, or a later skip would run off the segment list.
    fill_segments();
    std::vector<Segment> with_hole = { { first, 4 }, { ram.low_size() + 0x1000, 4 }, { third, 3 } };
    Reader reader(memory, with_hole);
    std::array<std::byte, 8> across_hole {};
    ASSERT_FALSE(reader.read(across_hole).has_value());
    std::array<std::byte, 4> out {};

    auto result = reader.read(out);

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(as_string(out), "abcd");
    EXPECT_EQ(reader.consumed(), 4u);
    EXPECT_EQ(reader.remaining(), 7u);
}

TEST_F(ReaderWriterTest, Reader_SkipAfterFailedRead_StaysWithinSegments)
{
    fill_segments();
    std::vector<Segment> with_hole = { { first, 4 }, { ram.low_size() + 0x1000, 4 }, { third, 3 } };
    Reader reader(memory, with_hole);
    std::array<std::byte, 8> across_hole {};
    ASSERT_FALSE(reader.read(across_hole).has_value());

    auto skipped = reader.skip(11);

    EXPECT_TRUE(skipped.has_value());
    EXPECT_EQ(reader.remaining(), 0u);
}

// ---- Writer ---------------------------------------------------------------------------------

TEST_F(ReaderWriterTest, Writer_WriteAcrossAllSegments_SplitsTheBytes)
{
    Writer writer(memory, segments);

    auto result = writer.write(text("ABCDEFGHIJKL"));

    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(guest_string(first, 4), "ABCD");
    EXPECT_EQ(guest_string(second, 5), "EFGHI");
    EXPECT_EQ(guest_string(third, 3), "JKL");
    EXPECT_EQ(writer.written(), 12u);
    EXPECT_EQ(writer.remaining(), 0u);
}

TEST_F(ReaderWriterTest, Writer_SeveralWrites_Append)
{
    Writer writer(memory, segments);

    ASSERT_TRUE(writer.write(text("ABC")).has_value());
    ASSERT_TRUE(writer.write(text("DEF")).has_value());

    EXPECT_EQ(guest_string(first, 4), "ABCD");
    EXPECT_EQ(guest_string(second, 2), "EF");
    EXPECT_EQ(writer.written(), 6u);
    EXPECT_EQ(writer.remaining(), 6u);
}

TEST_F(ReaderWriterTest, Writer_WriteObj_WritesItsBytes)
{
    Writer writer(memory, segments);
    uint32_t value = 0xa1b2c3d4;

    ASSERT_TRUE(writer.write_obj(value).has_value());

    EXPECT_EQ(ram.get<uint32_t>(first), value);
    EXPECT_EQ(writer.written(), 4u);
}

TEST_F(ReaderWriterTest, Writer_ShortWrite_FailsAndWritesNothing)
{
    fill_segments();
    Writer writer(memory, segments);

    auto result = writer.write(text("0123456789abc")); // 13 bytes into 12

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(writer.written(), 0u);
    EXPECT_EQ(writer.remaining(), 12u);
    EXPECT_EQ(guest_string(first, 4), "abcd");
    EXPECT_EQ(guest_string(third, 3), "jkl");
}

TEST_F(ReaderWriterTest, Writer_SegmentOutsideGuestMemory_FailsAndKeepsPosition)
{
    std::vector<Segment> with_hole = { { first, 4 }, { ram.low_size() + 0x1000, 4 } };
    Writer writer(memory, with_hole);
    ASSERT_FALSE(writer.write(text("12345678")).has_value());

    auto result = writer.write(text("WXYZ"));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(guest_string(first, 4), "WXYZ");
    EXPECT_EQ(writer.written(), 4u);
}

} // namespace
} // namespace vgpu::virtio
