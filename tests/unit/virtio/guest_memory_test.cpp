// The guest memory table (virtio/guest_memory.h) on real memfds.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <vector>

#include "virtio/guest_memory.h"

namespace vgpu::virtio {
namespace {

constexpr uint64_t page = 4096;
constexpr uint64_t u64_max = std::numeric_limits<uint64_t>::max();

Fd make_memfd(uint64_t size)
{
    Fd fd(::memfd_create("guest-memory-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
    return fd;
}

void pwrite_bytes(const Fd& fd, uint64_t offset, const char* text)
{
    ASSERT_EQ(
        ::pwrite(fd.get(), text, std::strlen(text), off_t(offset)), ssize_t(std::strlen(text)));
}

std::string pread_bytes(const Fd& fd, uint64_t offset, size_t length)
{
    std::string out(length, '\0');
    EXPECT_EQ(::pread(fd.get(), out.data(), length, off_t(offset)), ssize_t(length));
    return out;
}

std::string as_string(std::span<const std::byte> bytes)
{
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Two regions laid out as the tests below expect: A at GPA 0x10000 (frontend VA 0x7000'0000),
// B at GPA 0x100000 (frontend VA 0x7100'0000), 4 pages each, at offsets 0 and 4 pages of one memfd.
const RegionDescription region_a { 0x10000, 4 * page, 0x70000000, 0 };
const RegionDescription region_b { 0x100000, 4 * page, 0x71000000, 4 * page };

class GuestMemoryTest : public ::testing::Test {
protected:
    Fd memfd = make_memfd(16 * page);
    GuestMemory memory;
};

// ---- add_region -----------------------------------------------------------------------------

TEST_F(GuestMemoryTest, AddRegion_ValidRegion_IsAddedAndBumpsGeneration)
{
    uint64_t generation = memory.generation();

    auto result = memory.add_region(region_a, memfd);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    ASSERT_EQ(memory.region_count(), 1u);
    EXPECT_EQ(memory.region(0).guest_phys_addr, region_a.guest_phys_addr);
    EXPECT_EQ(memory.region(0).memory_size, region_a.memory_size);
    EXPECT_EQ(memory.region(0).userspace_addr, region_a.userspace_addr);
    EXPECT_NE(memory.generation(), generation);
}

TEST_F(GuestMemoryTest, AddRegion_TwoDisjointRegions_BothTranslate)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());

    auto result = memory.add_region(region_b, memfd);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(memory.region_count(), 2u);
    EXPECT_TRUE(memory.translate_gpa(region_a.guest_phys_addr, 8).has_value());
    EXPECT_TRUE(memory.translate_gpa(region_b.guest_phys_addr, 8).has_value());
}

TEST_F(GuestMemoryTest, AddRegion_ZeroSize_Fails)
{
    RegionDescription empty = region_a;
    empty.memory_size = 0;

    auto result = memory.add_region(empty, memfd);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, AddRegion_OverlappingGuestPhysicalRange_FailsAndChangesNothing)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    uint64_t generation = memory.generation();
    RegionDescription overlapping = region_b;
    overlapping.guest_phys_addr = region_a.guest_phys_addr + region_a.memory_size
        - 1; // shares one byte

    auto result = memory.add_region(overlapping, memfd);

    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().message.find("overlaps"), std::string::npos) << result.error().message;
    EXPECT_EQ(memory.region_count(), 1u);
    EXPECT_EQ(memory.generation(), generation);
}

TEST_F(GuestMemoryTest, AddRegion_AdjacentGuestPhysicalRange_IsAccepted)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    RegionDescription adjacent = region_b;
    adjacent.guest_phys_addr = region_a.guest_phys_addr + region_a.memory_size;

    auto result = memory.add_region(adjacent, memfd);

    EXPECT_TRUE(result.has_value()) << result.error().message;
}

TEST_F(GuestMemoryTest, AddRegion_OverlappingFrontendAddressRange_Fails)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    RegionDescription overlapping = region_b;
    overlapping.userspace_addr = region_a.userspace_addr + page;

    auto result = memory.add_region(overlapping, memfd);

    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().message.find("frontend address"), std::string::npos)
        << result.error().message;
    EXPECT_EQ(memory.region_count(), 1u);
}

TEST_F(GuestMemoryTest, AddRegion_GuestPhysicalRangeWrapping_Fails)
{
    RegionDescription wrapping = region_a;
    wrapping.guest_phys_addr = u64_max - page + 1;
    wrapping.memory_size = 2 * page;

    auto result = memory.add_region(wrapping, memfd);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, AddRegion_FrontendAddressRangeWrapping_Fails)
{
    RegionDescription wrapping = region_a;
    wrapping.userspace_addr = u64_max - page + 1;

    auto result = memory.add_region(wrapping, memfd);

    EXPECT_FALSE(result.has_value());
}

TEST_F(GuestMemoryTest, AddRegion_MmapOffsetWrapping_Fails)
{
    RegionDescription wrapping = region_a;
    wrapping.mmap_offset = u64_max - page + 1;

    auto result = memory.add_region(wrapping, memfd);

    EXPECT_FALSE(result.has_value());
}

TEST_F(GuestMemoryTest, AddRegion_FileShorterThanRegion_Fails)
{
    Fd short_file = make_memfd(2 * page);

    auto result = memory.add_region(region_a, short_file); // wants 4 pages

    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().message.find("exceeds the file"), std::string::npos)
        << result.error().message;
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, AddRegion_OffsetPushingPastFileEnd_Fails)
{
    RegionDescription past_end = region_a;
    past_end.mmap_offset = 13 * page; // 13 + 4 pages > 16

    auto result = memory.add_region(past_end, memfd);

    EXPECT_FALSE(result.has_value());
}

TEST_F(GuestMemoryTest, AddRegion_InvalidFd_Fails)
{
    auto result = memory.add_region(region_a, Fd());

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, AddRegion_TableFull_FailsAtMaxRegions)
{
    Fd big = make_memfd((GuestMemory::max_regions + 1) * page);
    for (uint64_t i = 0; i < GuestMemory::max_regions; ++i)
        ASSERT_TRUE(
            memory.add_region({ i * 0x100000, page, 0x70000000 + i * 0x100000, i * page }, big)
                .has_value());
    uint64_t n = GuestMemory::max_regions;

    auto result = memory.add_region(
        { n * 0x100000, page, 0x70000000 + n * 0x100000, n * page }, big);

    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().message.find("full"), std::string::npos) << result.error().message;
    EXPECT_EQ(memory.region_count(), GuestMemory::max_regions);
}

TEST_F(GuestMemoryTest, AddRegion_MmapOffsetNotPageAligned_TranslatesToThatOffset)
{
    pwrite_bytes(memfd, 100, "unaligned");
    RegionDescription mid_page { 0x20000, 2 * page, 0x72000000, 100 };

    auto result = memory.add_region(mid_page, memfd);
    ASSERT_TRUE(result.has_value()) << result.error().message;
    auto view = memory.translate_gpa(0x20000, 9);

    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(as_string(*view), "unaligned");
}

// ---- remove_region --------------------------------------------------------------------------

TEST_F(GuestMemoryTest, RemoveRegion_Existing_RemovesItAndItsTranslations)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    ASSERT_TRUE(memory.add_region(region_b, memfd).has_value());
    uint64_t generation = memory.generation();

    auto result = memory.remove_region(region_a);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    ASSERT_EQ(memory.region_count(), 1u);
    EXPECT_EQ(memory.region(0).guest_phys_addr, region_b.guest_phys_addr);
    EXPECT_FALSE(memory.translate_gpa(region_a.guest_phys_addr, 1).has_value());
    EXPECT_NE(memory.generation(), generation);
}

TEST_F(GuestMemoryTest, RemoveRegion_DifferentMmapOffset_StillMatches)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    RegionDescription described = region_a;
    described.mmap_offset = 12345; // vhost-user.rst: ignored for REM_MEM_REG

    auto result = memory.remove_region(described);

    EXPECT_TRUE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, RemoveRegion_DifferentSize_FailsAndKeepsRegion)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    RegionDescription described = region_a;
    described.memory_size = page;

    auto result = memory.remove_region(described);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 1u);
}

TEST_F(GuestMemoryTest, RemoveRegion_FromEmptyTable_Fails)
{
    auto result = memory.remove_region(region_a);

    EXPECT_FALSE(result.has_value());
}

// ---- replace --------------------------------------------------------------------------------

std::vector<Fd> dups(const Fd& fd, size_t count)
{
    std::vector<Fd> out;
    for (size_t i = 0; i < count; ++i) {
        auto copy = fd.dup();
        EXPECT_TRUE(copy.has_value());
        out.push_back(copy ? copy.release_value() : Fd());
    }
    return out;
}

TEST_F(GuestMemoryTest, Replace_ValidTable_ReplacesOldRegions)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    RegionDescription table[] = { region_b };
    auto fds = dups(memfd, 1);

    auto result = memory.replace(table, fds);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    ASSERT_EQ(memory.region_count(), 1u);
    EXPECT_EQ(memory.region(0).guest_phys_addr, region_b.guest_phys_addr);
    EXPECT_FALSE(memory.translate_gpa(region_a.guest_phys_addr, 1).has_value());
}

TEST_F(GuestMemoryTest, Replace_OverlapWithinNewTable_FailsAndKeepsOldTable)
{
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    uint64_t generation = memory.generation();
    RegionDescription overlapping = region_b;
    overlapping.userspace_addr = region_b.userspace_addr + page;
    overlapping.guest_phys_addr = 0x200000;
    RegionDescription table[] = { region_b, overlapping };
    auto fds = dups(memfd, 2);

    auto result = memory.replace(table, fds);

    ASSERT_FALSE(result.has_value());
    ASSERT_EQ(memory.region_count(), 1u);
    EXPECT_EQ(memory.region(0).guest_phys_addr, region_a.guest_phys_addr);
    EXPECT_TRUE(memory.translate_gpa(region_a.guest_phys_addr, 8).has_value());
    EXPECT_EQ(memory.generation(), generation);
}

TEST_F(GuestMemoryTest, Replace_LaterRegionFailsToMap_KeepsOldTable)
{
    // The first new region maps fine; the second is valid on paper but its file is too short.
    ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
    pwrite_bytes(memfd, 0, "old table");
    Fd short_file = make_memfd(page);
    std::vector<Fd> fds = dups(memfd, 1);
    fds.push_back(std::move(short_file));
    RegionDescription table[] = { region_b, { 0x200000, 4 * page, 0x72000000, 0 } };

    auto result = memory.replace(table, fds);

    ASSERT_FALSE(result.has_value());
    ASSERT_EQ(memory.region_count(), 1u);
    auto view = memory.translate_gpa(region_a.guest_phys_addr, 9);
    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(as_string(*view), "old table");
    EXPECT_FALSE(memory.translate_gpa(region_b.guest_phys_addr, 1).has_value());
}

TEST_F(GuestMemoryTest, Replace_FdCountMismatch_Fails)
{
    RegionDescription table[] = { region_a, region_b };
    auto fds = dups(memfd, 1);

    auto result = memory.replace(table, fds);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, Replace_MoreThanMaxRegions_Fails)
{
    size_t n = GuestMemory::max_regions + 1;
    Fd big = make_memfd(n * page);
    std::vector<RegionDescription> table;
    for (uint64_t i = 0; i < n; ++i)
        table.push_back({ i * 0x100000, page, 0x70000000 + i * 0x100000, i * page });
    auto fds = dups(big, n);

    auto result = memory.replace(table, fds);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(memory.region_count(), 0u);
}

TEST_F(GuestMemoryTest, Replace_ExactlyMaxRegions_Succeeds)
{
    size_t n = GuestMemory::max_regions;
    Fd big = make_memfd(n * page);
    std::vector<RegionDescription> table;
    for (uint64_t i = 0; i < n; ++i)
        table.push_back({ i * 0x100000, page, 0x70000000 + i * 0x100000, i * page });
    auto fds = dups(big, n);

    auto result = memory.replace(table, fds);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(memory.region_count(), n);
}

// ---- translation ----------------------------------------------------------------------------

class TranslateTest : public GuestMemoryTest {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(memory.add_region(region_a, memfd).has_value());
        ASSERT_TRUE(memory.add_region(region_b, memfd).has_value());
        pwrite_bytes(memfd, 0x10, "in region a");
        pwrite_bytes(memfd, 4 * page + 0x20, "in region b");
    }
};

TEST_F(TranslateTest, TranslateGpa_InRange_ViewsTheFileAtTheRightOffset)
{
    auto view = memory.translate_gpa(region_b.guest_phys_addr + 0x20, 11);

    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->size(), 11u);
    EXPECT_EQ(as_string(*view), "in region b");
}

TEST_F(TranslateTest, TranslateGpa_EndingExactlyAtRegionEnd_Succeeds)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr + region_a.memory_size - 8, 8);

    EXPECT_TRUE(view.has_value());
}

TEST_F(TranslateTest, TranslateGpa_StraddlingRegionEnd_Fails)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr + region_a.memory_size - 8, 9);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateGpa_BelowAllRegions_Fails)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr - 1, 1);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateGpa_BetweenRegions_Fails)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr + region_a.memory_size, 1);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateGpa_HugeLengthThatWouldWrap_Fails)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr + 8, u64_max - 4);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateGpa_ZeroLengthInRegion_Succeeds)
{
    auto view = memory.translate_gpa(region_a.guest_phys_addr + 4, 0);

    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->size(), 0u);
}

TEST_F(TranslateTest, TranslateFrontendVa_InRange_ViewsSameBytesAsGpa)
{
    auto by_va = memory.translate_frontend_va(region_a.userspace_addr + 0x10, 11);
    auto by_gpa = memory.translate_gpa(region_a.guest_phys_addr + 0x10, 11);

    ASSERT_TRUE(by_va.has_value());
    ASSERT_TRUE(by_gpa.has_value());
    EXPECT_EQ(by_va->data(), by_gpa->data());
    EXPECT_EQ(as_string(*by_va), "in region a");
}

TEST_F(TranslateTest, TranslateFrontendVa_OutOfRange_Fails)
{
    auto view = memory.translate_frontend_va(region_b.userspace_addr + region_b.memory_size, 1);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateFrontendVa_StraddlingRegionEnd_Fails)
{
    auto view = memory.translate_frontend_va(region_b.userspace_addr + region_b.memory_size - 4, 8);

    EXPECT_FALSE(view.has_value());
}

TEST_F(TranslateTest, TranslateFrontendVa_GuestPhysicalAddress_IsNotAFrontendAddress)
{
    auto view = memory.translate_frontend_va(region_a.guest_phys_addr, 1);

    EXPECT_FALSE(view.has_value());
}

// ---- read / write ---------------------------------------------------------------------------

TEST_F(TranslateTest, Read_InRange_CopiesGuestBytes)
{
    char out[11] {};

    auto result = memory.read(
        region_a.guest_phys_addr + 0x10, std::as_writable_bytes(std::span(out)));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(std::string(out, 11), "in region a");
}

TEST_F(TranslateTest, Read_StraddlingRegionEnd_FailsAndLeavesBufferAlone)
{
    char out[8] = { 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x' };

    auto result = memory.read(region_a.guest_phys_addr + region_a.memory_size - 4,
        std::as_writable_bytes(std::span(out)));

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(std::string(out, 8), "xxxxxxxx");
}

TEST_F(TranslateTest, Write_InRange_ReachesTheFile)
{
    const char text[] = "written";

    auto result = memory.write(region_b.guest_phys_addr + 0x100, std::as_bytes(std::span(text, 7)));

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(pread_bytes(memfd, 4 * page + 0x100, 7), "written");
}

TEST_F(TranslateTest, Write_OutOfRange_FailsAndWritesNothing)
{
    const char text[] = "written";
    uint64_t near_end = region_b.guest_phys_addr + region_b.memory_size - 3;

    auto result = memory.write(near_end, std::as_bytes(std::span(text, 7)));

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(pread_bytes(memfd, 8 * page - 3, 3), std::string(3, '\0'));
}

TEST_F(TranslateTest, Clear_RemovesAllRegions)
{
    memory.clear();

    EXPECT_EQ(memory.region_count(), 0u);
    EXPECT_FALSE(memory.translate_gpa(region_a.guest_phys_addr, 1).has_value());
}

} // namespace
} // namespace vgpu::virtio
