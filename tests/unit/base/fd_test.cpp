// Fd, the eventfd helpers and MemoryMap (base/fd.h, base/memory_map.h), on real descriptors.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "base/memory_map.h"

namespace vgpu {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

Fd make_memfd(size_t size)
{
    Fd fd(::memfd_create("fd-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
    return fd;
}

Fd make_eventfd_or_fail(unsigned initial = 0)
{
    auto fd = make_eventfd(initial);
    EXPECT_TRUE(fd.has_value());
    return fd ? fd.release_value() : Fd();
}

const long page_size = ::sysconf(_SC_PAGESIZE);

// ---- Fd -----------------------------------------------------------------------------------

TEST(Fd, DefaultConstructed_IsInvalid)
{
    Fd fd;

    EXPECT_FALSE(fd.valid());
    EXPECT_FALSE(static_cast<bool>(fd));
    EXPECT_EQ(fd.get(), -1);
}

TEST(Fd, Destructor_ClosesTheDescriptor)
{
    int raw = -1;
    {
        Fd fd = make_eventfd_or_fail();
        raw = fd.get();
        ASSERT_TRUE(is_open(raw));
    }

    EXPECT_FALSE(is_open(raw));
}

TEST(Fd, MoveConstruction_TransfersOwnership)
{
    Fd source = make_eventfd_or_fail();
    int raw = source.get();

    Fd target(std::move(source));

    EXPECT_FALSE(source.valid());
    EXPECT_EQ(target.get(), raw);
    EXPECT_TRUE(is_open(raw));
}

TEST(Fd, MoveAssignment_ClosesPreviousAndTakesNew)
{
    Fd target = make_eventfd_or_fail();
    int old_raw = target.get();
    Fd source = make_eventfd_or_fail();
    int new_raw = source.get();

    target = std::move(source);

    EXPECT_FALSE(is_open(old_raw));
    EXPECT_EQ(target.get(), new_raw);
    EXPECT_FALSE(source.valid());
    EXPECT_TRUE(is_open(new_raw));
}

TEST(Fd, Release_GivesUpOwnershipWithoutClosing)
{
    Fd fd = make_eventfd_or_fail();
    int expected = fd.get();

    int raw = fd.release();

    EXPECT_EQ(raw, expected);
    EXPECT_FALSE(fd.valid());
    EXPECT_TRUE(is_open(raw));
    ::close(raw);
}

TEST(Fd, Reset_ClosesAndInvalidates)
{
    Fd fd = make_eventfd_or_fail();
    int raw = fd.get();

    fd.reset();

    EXPECT_FALSE(fd.valid());
    EXPECT_FALSE(is_open(raw));
}

TEST(Fd, Dup_IsANewDescriptorForTheSameFile)
{
    Fd original = make_eventfd_or_fail();

    auto copy = original.dup();

    ASSERT_TRUE(copy.has_value());
    EXPECT_NE(copy->get(), original.get());
    ASSERT_TRUE(eventfd_signal(copy->get()).has_value());
    EXPECT_EQ(eventfd_drain(original.get()), 1u);
}

TEST(Fd, Dup_IsCloseOnExec)
{
    Fd original = make_eventfd_or_fail();

    auto copy = original.dup();

    ASSERT_TRUE(copy.has_value());
    EXPECT_TRUE(::fcntl(copy->get(), F_GETFD) & FD_CLOEXEC);
}

TEST(Fd, DupOfInvalid_Fails)
{
    Fd invalid;

    auto copy = invalid.dup();

    ASSERT_FALSE(copy.has_value());
    EXPECT_EQ(copy.error().errno_value, EBADF);
}

// ---- eventfd helpers ------------------------------------------------------------------------

TEST(MakeEventfd, Created_IsNonBlockingAndCloseOnExec)
{
    auto fd = make_eventfd();

    ASSERT_TRUE(fd.has_value());
    EXPECT_TRUE(::fcntl(fd->get(), F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
}

TEST(MakeEventfd, InitialValue_IsWhatDrainReturns)
{
    Fd fd = make_eventfd_or_fail(3);

    EXPECT_EQ(eventfd_drain(fd.get()), 3u);
}

TEST(EventfdSignal, TwoSignals_AddUp)
{
    Fd fd = make_eventfd_or_fail();

    ASSERT_TRUE(eventfd_signal(fd.get()).has_value());
    ASSERT_TRUE(eventfd_signal(fd.get()).has_value());

    EXPECT_EQ(eventfd_drain(fd.get()), 2u);
}

TEST(EventfdSignal, SaturatedCounter_IsNotAnError)
{
    // The largest counter value is 2^64 - 2; adding 1 more would block (EAGAIN non-blocking).
    Fd fd = make_eventfd_or_fail();
    uint64_t almost_full = UINT64_MAX - 1;
    ASSERT_EQ(::write(fd.get(), &almost_full, sizeof(almost_full)), ssize_t(sizeof(almost_full)));

    auto result = eventfd_signal(fd.get());

    EXPECT_TRUE(result.has_value());
    EXPECT_EQ(eventfd_drain(fd.get()), almost_full);
}

TEST(EventfdSignal, InvalidFd_Fails)
{
    auto result = eventfd_signal(-1);

    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().errno_value, EBADF);
}

TEST(EventfdDrain, AfterDrain_CounterIsZero)
{
    Fd fd = make_eventfd_or_fail(5);
    ASSERT_EQ(eventfd_drain(fd.get()), 5u);

    uint64_t second = eventfd_drain(fd.get());

    EXPECT_EQ(second, 0u);
}

TEST(SetNonblocking, Pipe_BecomesNonBlocking)
{
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    Fd read_end(ends[0]), write_end(ends[1]);
    ASSERT_FALSE(::fcntl(read_end.get(), F_GETFL) & O_NONBLOCK);

    auto result = set_nonblocking(read_end.get());

    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(::fcntl(read_end.get(), F_GETFL) & O_NONBLOCK);
    char c;
    EXPECT_EQ(::read(read_end.get(), &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
}

// ---- MemoryMap ----------------------------------------------------------------------------

TEST(MemoryMap, MapOfMemfd_HasRequestedSize)
{
    Fd memfd = make_memfd(size_t(page_size) * 2);

    auto map = MemoryMap::map(
        memfd.get(), uint64_t(page_size) * 2, 0, MemoryMap::Access::ReadWrite);

    ASSERT_TRUE(map.has_value());
    EXPECT_NE(map->data(), nullptr);
    EXPECT_EQ(map->size(), size_t(page_size) * 2);
    EXPECT_EQ(map->bytes().size(), size_t(page_size) * 2);
}

TEST(MemoryMap, WritesThroughOneMap_AreSeenThroughAnother)
{
    Fd memfd = make_memfd(size_t(page_size));
    auto writer = MemoryMap::map(memfd.get(), uint64_t(page_size), 0, MemoryMap::Access::ReadWrite);
    auto reader = MemoryMap::map(memfd.get(), uint64_t(page_size), 0, MemoryMap::Access::ReadOnly);
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE(reader.has_value());

    std::memcpy(writer->data() + 10, "shared", 6);

    EXPECT_EQ(std::memcmp(reader->data() + 10, "shared", 6), 0);
}

TEST(MemoryMap, PageAlignedOffset_MapsFromThatOffset)
{
    Fd memfd = make_memfd(size_t(page_size) * 2);
    ASSERT_EQ(::pwrite(memfd.get(), "second", 6, off_t(page_size)), 6);

    auto map = MemoryMap::map(
        memfd.get(), uint64_t(page_size), uint64_t(page_size), MemoryMap::Access::ReadOnly);

    ASSERT_TRUE(map.has_value());
    EXPECT_EQ(std::memcmp(map->data(), "second", 6), 0);
}

TEST(MemoryMap, UnalignedOffset_Fails)
{
    Fd memfd = make_memfd(size_t(page_size) * 2);

    auto map = MemoryMap::map(memfd.get(), uint64_t(page_size), 100, MemoryMap::Access::ReadOnly);

    ASSERT_FALSE(map.has_value());
    EXPECT_EQ(map.error().errno_value, EINVAL);
}

TEST(MemoryMap, ZeroSize_Fails)
{
    Fd memfd = make_memfd(size_t(page_size));

    auto map = MemoryMap::map(memfd.get(), 0, 0, MemoryMap::Access::ReadWrite);

    EXPECT_FALSE(map.has_value());
}

TEST(MemoryMap, InvalidFd_Fails)
{
    auto map = MemoryMap::map(-1, uint64_t(page_size), 0, MemoryMap::Access::ReadWrite);

    ASSERT_FALSE(map.has_value());
    EXPECT_EQ(map.error().errno_value, EBADF);
}

TEST(MemoryMap, MoveConstruction_LeavesSourceEmpty)
{
    Fd memfd = make_memfd(size_t(page_size));
    auto map = MemoryMap::map(memfd.get(), uint64_t(page_size), 0, MemoryMap::Access::ReadWrite);
    ASSERT_TRUE(map.has_value());
    std::byte* data = map->data();

    MemoryMap moved(std::move(*map));

    EXPECT_EQ(moved.data(), data);
    EXPECT_EQ(moved.size(), size_t(page_size));
    EXPECT_EQ(map->data(), nullptr);
    EXPECT_EQ(map->size(), 0u);
}

TEST(MemoryMap, Reset_Unmaps)
{
    Fd memfd = make_memfd(size_t(page_size));
    auto map = MemoryMap::map(memfd.get(), uint64_t(page_size), 0, MemoryMap::Access::ReadWrite);
    ASSERT_TRUE(map.has_value());
    void* address = map->data();

    map->reset();

    EXPECT_EQ(map->data(), nullptr);
    EXPECT_EQ(map->size(), 0u);
    // mincore fails with ENOMEM on an unmapped page.
    unsigned char vec = 0;
    EXPECT_EQ(::mincore(address, size_t(page_size), &vec), -1);
    EXPECT_EQ(errno, ENOMEM);
}

} // namespace
} // namespace vgpu
