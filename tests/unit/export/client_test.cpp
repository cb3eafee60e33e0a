// The consumer side's buffers: a REGION buffer and a GUEST_MEMORY buffer assembled from its
// EXTENTS, read through bytes() (pointers where contiguous, gathered where a row straddles).
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <numeric>
#include <vector>

#include "export/client.h"

namespace vgpu::exporting {
namespace {

template <Body T>
Message message(const T& body, std::vector<Fd> fds = {})
{
    auto m = parse(encode(body, 0), std::move(fds));
    EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().reason);
    return m ? std::move(m.value()) : Message {};
}

// A memfd of `pages` pages, byte i holding i * 7.
Fd memfd_of(size_t pages)
{
    size_t page = size_t(::sysconf(_SC_PAGESIZE));
    Fd fd(::memfd_create("client-test", MFD_CLOEXEC));
    std::vector<std::byte> bytes(pages * page);
    for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = std::byte(uint8_t(i * 7));
    EXPECT_EQ(::pwrite(fd.get(), bytes.data(), bytes.size(), 0), ssize_t(bytes.size()));
    return fd;
}

TEST(ExportClient, GuestMemoryBuffer_AssembledFromItsExtents_ReadsAcrossThem)
{
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    // A 64x32 image (8 KiB) in pages 5, 2 and 9 of the file, starting 1024 bytes in.
    Buffer info { 1, 3, PLANE_GUEST_MEMORY, 0x34325258, 0, 64, 32, 256, 3, 1024, 3 * page };
    std::vector<Fd> fds;
    fds.push_back(memfd_of(10));
    auto buffer_message = message(info, std::move(fds));
    BufferAssembler assembler;
    auto first = assembler.add(buffer_message);
    ASSERT_TRUE(first.has_value());
    EXPECT_FALSE(first->has_value()) << "extents are still to come";
    Extents e { 1, 3, 0, 3, {} };
    e.entry[0] = { 5 * page, page };
    e.entry[1] = { 2 * page, page };
    e.entry[2] = { 9 * page, page };
    auto extents_message = message(e);
    auto whole = assembler.add(extents_message);
    ASSERT_TRUE(whole.has_value()) << whole.error().message;
    ASSERT_TRUE(whole->has_value());
    const MappedBuffer& buffer = **whole;
    EXPECT_TRUE(buffer.scattered());
    // The byte at image position p is file byte extent(1024 + p) * 7.
    auto file_byte = [&](uint64_t p) {
        uint64_t at = 1024 + p;
        uint64_t pages[] = { 5, 2, 9 };
        return std::byte(uint8_t((pages[at / page] * page + at % page) * 7));
    };
    std::vector<std::byte> scratch;
    // Inside one extent: a pointer into the mapping.
    const std::byte* inside = buffer.bytes(0, 256, scratch);
    ASSERT_NE(inside, nullptr);
    EXPECT_NE(inside, scratch.data());
    EXPECT_EQ(inside[10], file_byte(10));
    // A row across the first extent's end: gathered.
    uint64_t across = page - 1024 - 100;
    const std::byte* gathered = buffer.bytes(across, 256, scratch);
    ASSERT_EQ(gathered, scratch.data());
    for (uint64_t i = 0; i < 256; ++i)
        ASSERT_EQ(gathered[i], file_byte(across + i)) << i;
    // Past the buffer: nothing.
    EXPECT_EQ(buffer.bytes(3 * page - 1024, 1, scratch), nullptr);
}

TEST(ExportClient, Assembler_RefusesExtentsOutOfOrderOrWithoutABuffer_AndBuffersThatDoNotFit)
{
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    BufferAssembler assembler;
    Extents e { 1, 3, 0, 1, {} };
    e.entry[0] = { 0, page };
    auto stray = message(e);
    EXPECT_FALSE(assembler.add(stray).has_value()) << "EXTENTS without a BUFFER";

    Buffer info { 1, 3, PLANE_GUEST_MEMORY, 0x34325258, 0, 64, 32, 256, 2, 0, 2 * page };
    std::vector<Fd> fds;
    fds.push_back(memfd_of(4));
    auto buffer_message = message(info, std::move(fds));
    ASSERT_TRUE(assembler.add(buffer_message).has_value());
    Extents late { 1, 3, 1, 1, {} };
    late.entry[0] = { 0, page };
    auto skipped = message(late);
    EXPECT_FALSE(assembler.add(skipped).has_value()) << "the first extent was skipped";

    // Extents that cover less than the buffer's size.
    Buffer small { 1, 4, PLANE_GUEST_MEMORY, 0x34325258, 0, 64, 32, 256, 1, 0, 2 * page };
    std::vector<Fd> more;
    more.push_back(memfd_of(4));
    auto small_message = message(small, std::move(more));
    ASSERT_TRUE(assembler.add(small_message).has_value());
    Extents one { 1, 4, 0, 1, {} };
    one.entry[0] = { 0, page };
    auto short_message = message(one);
    auto refused = assembler.add(short_message);
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("does not fit"), std::string::npos)
        << refused.error().message;
}

} // namespace
} // namespace vgpu::exporting
