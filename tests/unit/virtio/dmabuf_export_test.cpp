// Exporting guest pages as dmabufs (virtio/dmabuf_export.h): the memfd stand-in the harness uses,
// and udmabuf as far as this host has it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "virtio/dmabuf_export.h"
#include "virtio/guest_memory.h"

namespace vgpu::virtio {
namespace {

constexpr uint64_t page = 4096;

TEST(DmabufExport, MemfdStandin_IsASealedReadOnlyCopyOfTheRangesInOrder)
{
    Fd ram(::memfd_create("dmabuf-export-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    ASSERT_EQ(::ftruncate(ram.get(), 64 * page), 0);
    std::vector<std::byte> bytes(64 * page);
    for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = std::byte(uint8_t(i / page * 3 + i));
    ASSERT_EQ(::pwrite(ram.get(), bytes.data(), bytes.size(), 0), ssize_t(bytes.size()));
    GuestMemory memory;
    ASSERT_TRUE(memory.add_region({ 0, 64 * page, 0x7f0000000000, 0 }, ram).has_value());
    std::vector<GuestRange> ranges { { 10 * page, page }, { 2 * page, 2 * page } };

    auto exporter = make_memfd_standin_exporter();
    auto fd = exporter->export_ranges(memory, ranges, 3 * page);
    ASSERT_TRUE(fd.has_value()) << fd.error().message;
    struct stat st { };
    ASSERT_EQ(::fstat(fd->get(), &st), 0);
    EXPECT_EQ(uint64_t(st.st_size), 3 * page);
    std::vector<std::byte> got(3 * page);
    ASSERT_EQ(::pread(fd->get(), got.data(), got.size(), 0), ssize_t(got.size()));
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + page, bytes.begin() + 10 * page));
    EXPECT_TRUE(std::equal(got.begin() + page, got.end(), bytes.begin() + 2 * page));
    EXPECT_EQ(::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0), MAP_FAILED);
    EXPECT_NE(::fcntl(fd->get(), F_GET_SEALS) & F_SEAL_WRITE, 0);
    // Ranges that do not cover the size, or leave guest memory, are refused.
    EXPECT_FALSE(exporter->export_ranges(memory, ranges, 4 * page).has_value());
    std::vector<GuestRange> outside { { 100 * page, page } };
    EXPECT_FALSE(exporter->export_ranges(memory, outside, page).has_value());
}

TEST(DmabufExport, Udmabuf_IsThereExactlyWhenTheDeviceOpens)
{
    bool device = ::access("/dev/udmabuf", R_OK | W_OK) == 0;
    auto exporter = make_udmabuf_exporter();
    EXPECT_EQ(exporter.has_value(), device);
    if (!exporter) {
        EXPECT_NE(exporter.error().message.find("/dev/udmabuf"), std::string::npos)
            << exporter.error().message;
    }
    auto limits = read_udmabuf_limits();
    EXPECT_GT(limits.list_limit, 0u);
    EXPECT_GT(limits.size_limit_mb, 0u);
}

} // namespace
} // namespace vgpu::virtio
