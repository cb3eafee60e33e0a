// Linear views of scattered guest memory (virtio/guest_view.h) on real memfds: which kind a set of
// ranges gets, that every kind reads the guest's bytes in order, that mapped views follow the
// guest's writes without a copy, that gathered ones copy only when asked, and that a view outlives
// the memory table it was built from.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "virtio/guest_memory.h"
#include "virtio/guest_view.h"

namespace vgpu::virtio {
namespace {

constexpr uint64_t page = 4096;

class GuestViewTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        fd = Fd(::memfd_create("guest-view-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        ASSERT_TRUE(fd.valid());
        ASSERT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
        // Sealed against shrinking, as QEMU's memory-backend-memfd is.
        ASSERT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
        // Two regions, as QEMU's pc machine has: low memory, and one at 4 GiB whose fd offset
        // follows the low one's.
        ASSERT_TRUE(memory.add_region({ 0, low, 0x7f0000000000, 0 }, fd).has_value());
        ASSERT_TRUE(
            memory.add_region({ 4ull << 30, size - low, 0x7f1000000000, low }, fd).has_value());
        for (uint64_t i = 0; i < size; ++i)
            byte_at(i) = std::byte(uint8_t(i * 7 + i / page));
    }
    // The guest's byte at fd offset `at` (through a mapping of our own).
    std::byte& byte_at(uint64_t at)
    {
        if (!whole) {
            void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
            EXPECT_NE(p, MAP_FAILED);
            whole = static_cast<std::byte*>(p);
        }
        return whole[at];
    }
    void TearDown() override
    {
        if (whole)
            ::munmap(whole, size);
    }
    uint64_t fd_offset(uint64_t gpa) const
    {
        return gpa >= (4ull << 30) ? gpa - (4ull << 30) + low : gpa;
    }
    // What the view should hold: the ranges' bytes end to end.
    std::vector<std::byte> expected(const std::vector<GuestRange>& ranges, uint64_t length)
    {
        std::vector<std::byte> out;
        for (const auto& r : ranges)
            for (uint64_t i = 0; i < r.length && out.size() < length; ++i)
                out.push_back(byte_at(fd_offset(r.gpa + i)));
        return out;
    }
    static bool equal(const GuestView& view, const std::vector<std::byte>& bytes)
    {
        return view.size() == bytes.size()
            && std::memcmp(view.data(), bytes.data(), bytes.size()) == 0;
    }

    static constexpr uint64_t low = 1 << 20, size = 2 << 20;
    Fd fd;
    GuestMemory memory;
    std::byte* whole = nullptr;
};

TEST_F(GuestViewTest, OneContiguousPiece_IsASpanOfTheRegion)
{
    std::vector<GuestRange> ranges { { 3 * page, page }, { 4 * page, 2 * page } };
    auto view = GuestView::create(memory, ranges, 3 * page, 100);
    ASSERT_TRUE(view.has_value()) << view.error().message;
    EXPECT_EQ((*view)->kind(), GuestView::Kind::Span);
    EXPECT_EQ((*view)->runs(), 1u);
    EXPECT_EQ((*view)->mappings(), 0u);
    EXPECT_TRUE(equal(**view, expected(ranges, 3 * page)));
}

TEST_F(GuestViewTest, ScatteredPages_AreMappedSideBySide_OneMappingPerRun_AndFollowTheGuest)
{
    // Out of order, a two-page run, and a last piece shorter than a page.
    std::vector<GuestRange> ranges { { 40 * page, page }, { 10 * page, 2 * page },
        { 30 * page, page }, { 31 * page, page }, { 5 * page, 100 } };
    const uint64_t length = 5 * page + 100;
    auto view = GuestView::create(memory, ranges, length, 100);
    ASSERT_TRUE(view.has_value()) << view.error().message;
    EXPECT_EQ((*view)->kind(), GuestView::Kind::Mapped);
    EXPECT_EQ((*view)->runs(), 4u) << "30 and 31 are one run";
    EXPECT_EQ((*view)->mappings(), 4u);
    EXPECT_EQ((*view)->host_bytes(), 0u);
    EXPECT_TRUE(equal(**view, expected(ranges, length)));
    // The guest writes; the view shows it with nothing copied.
    byte_at(10 * page + 5) = std::byte(0xAB);
    EXPECT_EQ((*view)->data()[page + 5], std::byte(0xAB));
    auto copied = (*view)->gather(memory, 0, length);
    ASSERT_TRUE(copied.has_value());
    EXPECT_EQ(*copied, 0u);
}

TEST_F(GuestViewTest, RunsAcrossTwoRegions_AreSplitAtTheRegionEnd)
{
    // The last page of low memory, then the first of high memory: adjacent in no sense but the
    // list; and a run that would continue past low memory's end is cut there.
    std::vector<GuestRange> ranges { { low - page, page }, { 4ull << 30, 2 * page } };
    auto view = GuestView::create(memory, ranges, 3 * page, 100);
    ASSERT_TRUE(view.has_value()) << view.error().message;
    EXPECT_EQ((*view)->kind(), GuestView::Kind::Mapped);
    EXPECT_TRUE(equal(**view, expected(ranges, 3 * page)));
    // A range that crosses from low memory into the gap is not guest memory.
    std::vector<GuestRange> crossing { { low - page, 2 * page } };
    EXPECT_FALSE(GuestView::create(memory, crossing, 2 * page, 100).has_value());
}

TEST_F(GuestViewTest, UnalignedPieces_OrOverTheMappingBudget_AreGathered_CopiedOnlyWhenAsked)
{
    std::vector<GuestRange> unaligned { { 8 * page + 64, page }, { 20 * page, page } };
    auto view = GuestView::create(memory, unaligned, 2 * page, 100);
    ASSERT_TRUE(view.has_value()) << view.error().message;
    EXPECT_EQ((*view)->kind(), GuestView::Kind::Gathered);
    EXPECT_EQ((*view)->host_bytes(), 2 * page);
    EXPECT_TRUE(equal(**view, expected(unaligned, 2 * page)));
    byte_at(20 * page + 1) = std::byte(0x5A);
    EXPECT_NE((*view)->data()[page + 1], std::byte(0x5A)) << "a copy until gathered again";
    auto copied = (*view)->gather(memory, page, page);
    ASSERT_TRUE(copied.has_value());
    EXPECT_EQ(*copied, page);
    EXPECT_EQ((*view)->data()[page + 1], std::byte(0x5A));

    std::vector<GuestRange> scattered { { 1 * page, page }, { 3 * page, page },
        { 5 * page, page } };
    auto over = GuestView::create(memory, scattered, 3 * page, 2);
    ASSERT_TRUE(over.has_value());
    EXPECT_EQ((*over)->kind(), GuestView::Kind::Gathered) << "3 runs, budget 2";
    EXPECT_TRUE(equal(**over, expected(scattered, 3 * page)));
}

TEST_F(GuestViewTest, BadRanges_AreRefused)
{
    std::vector<GuestRange> short_ranges { { page, page } };
    EXPECT_FALSE(GuestView::create(memory, short_ranges, 2 * page, 100).has_value()) << "too short";
    EXPECT_FALSE(GuestView::create(memory, short_ranges, 0, 100).has_value()) << "empty";
    std::vector<GuestRange> outside { { 3ull << 30, page } };
    EXPECT_FALSE(GuestView::create(memory, outside, page, 100).has_value());
    std::vector<GuestRange> wrapping { { ~uint64_t(0) - 10, page } };
    EXPECT_FALSE(GuestView::create(memory, wrapping, page, 100).has_value());
}

TEST_F(GuestViewTest, AViewOutlivesTheMemoryTable)
{
    std::vector<GuestRange> span { { 2 * page, page } };
    std::vector<GuestRange> mapped { { 2 * page, page }, { 9 * page, page } };
    auto a = GuestView::create(memory, span, page, 100);
    auto b = GuestView::create(memory, mapped, 2 * page, 100);
    ASSERT_TRUE(a.has_value() && b.has_value());
    auto want_a = expected(span, page), want_b = expected(mapped, 2 * page);
    memory.clear(); // the frontend's new table: our old mappings stay readable
    EXPECT_TRUE(equal(**a, want_a));
    EXPECT_TRUE(equal(**b, want_b));
}

} // namespace
} // namespace vgpu::virtio
