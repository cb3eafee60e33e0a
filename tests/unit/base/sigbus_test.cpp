// A shared mapping whose file shrinks: a protected mapping reads zeros where the file ended and
// reports the fault; nothing else changes what a SIGBUS does.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "base/memory_map.h"
#include "base/sigbus.h"

namespace vgpu {
namespace {

constexpr size_t pages = 16;

struct Mapped {
    Fd fd;
    MemoryMap map;
};

Mapped map_memfd()
{
    Mapped m;
    m.fd = Fd(::memfd_create("sigbus-test", MFD_CLOEXEC));
    size_t size = pages * size_t(::sysconf(_SC_PAGESIZE));
    EXPECT_EQ(::ftruncate(m.fd.get(), off_t(size)), 0);
    auto map = MemoryMap::map(m.fd.get(), size, 0, MemoryMap::Access::ReadWrite);
    EXPECT_TRUE(map);
    m.map = map.release_value();
    std::memset(m.map.data(), 0x5a, size);
    return m;
}

TEST(Sigbus, ProtectedMappingOfATruncatedFile_ReadsZerosAndReportsTheFault)
{
    ASSERT_TRUE(sigbus::install());
    auto m = map_memfd();
    ASSERT_TRUE(m.map.protect_against_truncation());
    size_t page = size_t(::sysconf(_SC_PAGESIZE));
    uint64_t before = sigbus::faults();
    // The file's owner shrinks it to 4 pages: pages 4.. are gone.
    ASSERT_EQ(::ftruncate(m.fd.get(), off_t(4 * page)), 0);

    auto* p = reinterpret_cast<volatile uint8_t*>(m.map.data());
    uint8_t kept = p[page];
    uint8_t lost = p[10 * page];
    uint8_t after = p[15 * page + 7];
    p[12 * page] = 1; // writes to the lost part go nowhere, but do not fault either

    EXPECT_EQ(kept, 0x5a);
    EXPECT_EQ(lost, 0);
    EXPECT_EQ(after, 0);
    EXPECT_EQ(sigbus::faults(), before + 1) << "one fault replaced the rest of the mapping";
    uint64_t signalled = 0;
    EXPECT_EQ(::read(sigbus::notify_fd(), &signalled, sizeof(signalled)), 8);
    EXPECT_GE(signalled, 1u);
}

TEST(SigbusDeathTest, UnprotectedMappingOfATruncatedFile_StillDies)
{
    ASSERT_TRUE(sigbus::install());
    EXPECT_DEATH(
        {
            auto m = map_memfd();
            ASSERT_EQ(::ftruncate(m.fd.get(), 0), 0);
            auto* p = reinterpret_cast<volatile uint8_t*>(m.map.data());
            p[0] = 1;
        },
        "");
}

} // namespace
} // namespace vgpu
