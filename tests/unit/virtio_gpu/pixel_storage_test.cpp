// The CRC cache of PixelStorage: whatever sequence of changes, a rectangle's CRC equals the CRC
// computed from scratch over its pixels; and only what changed is checksummed again.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "virtio_gpu/pixel_storage.h"

namespace vgpu::virtio_gpu {
namespace {

// From scratch, pixel by pixel through the canonical layout: independent of the cache.
uint32_t fresh_crc(const PixelStorage& p, const Rect& r)
{
    uint32_t crc = 0;
    for (uint32_t y = r.y; y < r.y + r.height; ++y)
        for (uint32_t x = r.x; x < r.x + r.width; ++x)
            crc = canonical_row_crc(
                crc, p.data() + size_t(y) * p.stride() + size_t(x) * 4, 1, p.format());
    return crc;
}

std::shared_ptr<PixelStorage> make(
    uint32_t width, uint32_t height, Format format = Format::B8G8R8X8Unorm)
{
    return PixelStorage::allocate(width, height, width * 4, *format_info(uint32_t(format)));
}

void scribble(const PixelStorage& p, const Rect& r, std::minstd_rand& rng)
{
    for (uint32_t y = r.y; y < r.y + r.height; ++y)
        for (uint32_t x = r.x; x < r.x + r.width; ++x) {
            uint32_t v = uint32_t(rng());
            std::memcpy(p.data() + size_t(y) * p.stride() + size_t(x) * 4, &v, 4);
        }
    p.changed(r);
}

Rect random_rect(uint32_t w, uint32_t h, std::minstd_rand& rng)
{
    uint32_t x = uint32_t(rng() % w), y = uint32_t(rng() % h);
    return Rect { x, y, uint32_t(1 + rng() % (w - x)), uint32_t(1 + rng() % (h - y)) };
}

TEST(PixelStorageCrc, RandomChangesAndRectangles_MatchACrcFromScratch)
{
    // 300 px: two whole 128-px tiles and a short one of 44; also the XRGB fast path and a format
    // that goes through conversion.
    for (Format format : { Format::B8G8R8X8Unorm, Format::R8G8B8A8Unorm }) {
        SCOPED_TRACE(int(format));
        auto p = make(300, 40, format);
        std::minstd_rand rng(7);
        const Rect full { 0, 0, 300, 40 };
        EXPECT_EQ(p->rect_crc(full), fresh_crc(*p, full)); // all black
        for (int step = 0; step < 200; ++step) {
            SCOPED_TRACE(step);
            // Whole rows now and then (a full-width transfer), else any rectangle.
            Rect change = step % 5 == 0
                ? Rect { 0, uint32_t(rng() % 40), 300, uint32_t(1 + rng() % 3) }
                : random_rect(300, 40, rng);
            change.height = std::min(change.height, 40 - change.y);
            scribble(*p, change, rng);
            Rect asked = step % 3 == 0 ? random_rect(300, 40, rng) : full;
            ASSERT_EQ(p->rect_crc(asked), fresh_crc(*p, asked));
        }
    }
}

TEST(PixelStorageCrc, NarrowRectanglesAtTileEdges_MatchACrcFromScratch)
{
    auto p = make(400, 4);
    std::minstd_rand rng(3);
    scribble(*p, Rect { 0, 0, 400, 4 }, rng);
    for (uint32_t x : { 0u, 1u, 127u, 128u, 129u, 255u, 256u, 300u, 383u, 384u })
        for (uint32_t w : { 1u, 2u, 127u, 128u, 129u, 256u })
            if (x + w <= 400) {
                Rect r { x, 1, w, 2 };
                EXPECT_EQ(p->rect_crc(r), fresh_crc(*p, r)) << x << "+" << w;
            }
}

TEST(PixelStorageCrc, SmallDamage_ChecksumsOnlyTheTilesItTouches)
{
    auto p = make(1920, 1080);
    std::minstd_rand rng(1);
    const Rect full { 0, 0, 1920, 1080 };
    scribble(*p, Rect { 0, 0, 1920, 1080 }, rng);
    (void)p->rect_crc(full);
    // The first partial change of a row turns it into tiles (one pass over the row), after that
    // only the tiles a change touches are checksummed again.
    scribble(*p, Rect { 64, 64, 256, 256 }, rng);
    (void)p->rect_crc(full);
    uint64_t before = p->pixels_checksummed();

    scribble(*p, Rect { 64, 64, 256, 256 }, rng);
    uint32_t crc = p->rect_crc(full);

    EXPECT_EQ(crc, fresh_crc(*p, full));
    // x 64..320 touches tiles 0, 1 and 2 (0..384): 384 pixels on each of 256 rows.
    EXPECT_EQ(p->pixels_checksummed() - before, 256u * 384u);
}

TEST(PixelStorageCrc, WholeRowChanges_ChecksumEachRowOnce)
{
    auto p = make(1024, 16);
    std::minstd_rand rng(2);
    const Rect full { 0, 0, 1024, 16 };
    (void)p->rect_crc(full);
    uint64_t before = p->pixels_checksummed();

    scribble(*p, Rect { 0, 4, 1024, 8 }, rng);
    EXPECT_EQ(p->rect_crc(full), fresh_crc(*p, full));
    EXPECT_EQ(p->rect_crc(full), fresh_crc(*p, full)); // cached: nothing new

    EXPECT_EQ(p->pixels_checksummed() - before, 8u * 1024u);
}

TEST(PixelStorageCrc, AlphaIsIgnored_XrgbAndArgbStorageGiveTheSameCrc)
{
    auto x = make(200, 3, Format::B8G8R8X8Unorm), a = make(200, 3, Format::B8G8R8A8Unorm);
    std::minstd_rand rng(9);
    scribble(*x, Rect { 0, 0, 200, 3 }, rng);
    std::memcpy(a->data(), x->data(), x->size());
    for (size_t i = 3; i < a->size(); i += 4)
        a->data()[i] = std::byte(0xff);
    a->changed(Rect { 0, 0, 200, 3 });

    EXPECT_EQ(x->rect_crc(Rect { 0, 0, 200, 3 }), a->rect_crc(Rect { 0, 0, 200, 3 }));
    EXPECT_EQ(x->rect_crc(Rect { 5, 1, 150, 2 }), a->rect_crc(Rect { 5, 1, 150, 2 }));
}

// copy_in as a transfer does it: a rectangle's rows, each split into pieces at random byte
// positions (guest pages end anywhere), checksummed on the way or not.
void transfer(PixelStorage& p, const Rect& r, std::minstd_rand& rng, bool checksum)
{
    for (uint32_t y = r.y; y < r.y + r.height; ++y) {
        std::vector<uint32_t> row(r.width);
        for (auto& v : row)
            v = uint32_t(rng());
        const auto* bytes = reinterpret_cast<const std::byte*>(row.data());
        size_t length = size_t(r.width) * 4, done = 0;
        while (done < length) {
            size_t piece = std::min<size_t>(length - done, 1 + rng() % 3000);
            p.copy_in(
                size_t(y) * p.stride() + size_t(r.x) * 4 + done, bytes + done, piece, checksum);
            done += piece;
        }
        EXPECT_EQ(
            std::memcmp(p.data() + size_t(y) * p.stride() + size_t(r.x) * 4, row.data(), length),
            0);
    }
}

TEST(PixelStorageCrc, CopyIn_AnyPiecesCheckedOrNot_MatchACrcFromScratch)
{
    for (uint32_t width : { 300u, 1280u, 77u }) {
        SCOPED_TRACE(width);
        auto p = make(width, 30);
        std::minstd_rand rng(width);
        const Rect full { 0, 0, width, 30 };
        for (int step = 0; step < 60; ++step) {
            SCOPED_TRACE(step);
            Rect change = step % 4 == 0 ? full : random_rect(width, 30, rng);
            transfer(*p, change, rng, step % 3 != 2);
            Rect asked = step % 5 == 0 ? random_rect(width, 30, rng) : full;
            ASSERT_EQ(p->rect_crc(asked), fresh_crc(*p, asked));
        }
    }
}

TEST(PixelStorageCrc, CopyInChecksummed_WholeFrame_LeavesNothingToChecksumLater)
{
    auto p = make(1280, 40);
    std::minstd_rand rng(5);
    const Rect full { 0, 0, 1280, 40 };
    // One piece per row: every tile arrives whole and is checksummed during the copy.
    std::vector<uint32_t> frame(1280 * 40);
    for (auto& v : frame)
        v = uint32_t(rng());
    for (uint32_t y = 0; y < 40; ++y)
        p->copy_in(size_t(y) * p->stride(),
            reinterpret_cast<const std::byte*>(frame.data() + size_t(y) * 1280), 1280 * 4, true);
    uint64_t during_copy = p->pixels_checksummed();

    EXPECT_EQ(p->rect_crc(full), fresh_crc(*p, full));

    EXPECT_EQ(during_copy, 1280u * 40u);
    EXPECT_EQ(p->pixels_checksummed(), during_copy);
}

TEST(PixelStorageCrc, CopyIn_OtherFormats_AreCopiedAndChecksummedLater)
{
    auto p = make(256, 2, Format::R8G8B8A8Unorm);
    std::vector<uint32_t> row(256, 0x11223344);
    p->copy_in(0, reinterpret_cast<const std::byte*>(row.data()), 1024, true);

    EXPECT_EQ(p->pixels_checksummed(), 0u);
    EXPECT_EQ(p->rect_crc(Rect { 0, 0, 256, 2 }), fresh_crc(*p, Rect { 0, 0, 256, 2 }));
}

// ---- share(): the pixels as a read-only memfd for the export socket ---------------------------

// A reader that removes itself when asked to let go, holding for a consumer or not.
class TestReader final : public StorageReader {
public:
    TestReader(const PixelStorage& pixels, bool holds)
        : m_pixels(&pixels)
        , m_holds(holds)
    {
        pixels.add_reader(this);
    }
    ~TestReader() override { leave(); }
    TestReader(const TestReader&) = delete;
    TestReader& operator=(const TestReader&) = delete;
    void let_go() override
    {
        ++let_go_calls;
        leave();
    }
    bool holds_for_consumer() const override { return m_holds; }
    void leave()
    {
        if (auto* p = std::exchange(m_pixels, nullptr))
            p->remove_reader(this);
    }
    int let_go_calls = 0;

private:
    const PixelStorage* m_pixels;
    bool m_holds;
};

TEST(PixelStorageReaders, AWaitForConsumerHolds_IgnoresOtherReaders)
{
    auto pixels = make(64, 64);
    TestReader update(*pixels, false);
    TestReader consumer(*pixels, true);
    EXPECT_EQ(pixels->readers(), 2u);
    EXPECT_EQ(pixels->consumer_holds(), 1u);
    int unheld = 0, unread = 0;
    pixels->when_unread([&] { ++unheld; }, PixelStorage::Readers::ConsumerHolds);
    pixels->when_unread([&] { ++unread; });
    EXPECT_EQ(unheld, 0);
    // Letting go of consumer holds asks only the holder.
    pixels->make_readers_let_go(PixelStorage::Readers::ConsumerHolds);
    EXPECT_EQ(consumer.let_go_calls, 1);
    EXPECT_EQ(update.let_go_calls, 0);
    EXPECT_EQ(unheld, 1);
    EXPECT_EQ(unread, 0) << "the other reader still reads";
    update.leave();
    EXPECT_EQ(unread, 1);
    EXPECT_EQ(unheld, 1);
    // With no holder, a wait for holds ends at once.
    pixels->when_unread([&] { ++unheld; }, PixelStorage::Readers::ConsumerHolds);
    EXPECT_EQ(unheld, 2);
}

TEST(PixelStorageShare, Moves_ToASealedMemfd_AtTheSameAddress_WithTheSamePixels)
{
    auto p = make(256, 256); // 256 KiB: a mapping of its own
    std::minstd_rand rng(5);
    scribble(*p, Rect { 0, 0, 256, 256 }, rng);
    std::vector<std::byte> before(p->data(), p->data() + p->size());
    uint32_t crc_before = p->rect_crc(Rect { 0, 0, 256, 256 });
    std::byte* address = p->data();

    auto shared = p->share();
    ASSERT_TRUE(shared.has_value()) << shared.error().message;
    const Fd& fd = **shared;
    EXPECT_EQ(p->data(), address) << "every pointer into the pixels stays valid";
    EXPECT_EQ(std::memcmp(p->data(), before.data(), before.size()), 0);
    EXPECT_EQ(p->rect_crc(Rect { 0, 0, 256, 256 }), crc_before);
    EXPECT_EQ(p->share().value().get(), shared->get()) << "one memfd, made once";

    // A consumer's read-only mapping sees our later writes.
    size_t length = p->mapped_size();
    void* view = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(view, MAP_FAILED) << std::strerror(errno);
    uint32_t marker = 0x00ABCDEF;
    p->copy_in(1000 * 4, reinterpret_cast<const std::byte*>(&marker), 4, false);
    EXPECT_EQ(std::memcmp(static_cast<std::byte*>(view) + 4000, &marker, 4), 0);
    ::munmap(view, length);

    // And cannot write, shrink, grow or unseal it.
    errno = 0;
    EXPECT_EQ(::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0), MAP_FAILED);
    EXPECT_EQ(errno, EPERM);
    EXPECT_NE(::ftruncate(fd.get(), 0), 0);
    EXPECT_NE(::ftruncate(fd.get(), off_t(length) * 2), 0);
    EXPECT_LT(::pwrite(fd.get(), &marker, 4, 0), 0);
    EXPECT_NE(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE), 0);
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL),
        F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
    // A private writable mapping (where the kernel allows one) is the consumer's own copy: its
    // writes never reach our pixels.
    void* priv = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
    if (priv != MAP_FAILED) {
        std::memset(priv, 0x55, 64);
        ::munmap(priv, length);
    }
    EXPECT_EQ(std::memcmp(p->data(), before.data(), 64), 0);
}

TEST(PixelStorageShare, SmallStorageAndGuestMemory_CannotMove)
{
    auto small = make(64, 64); // 16 KiB from the heap
    auto refused = small->share();
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("too few"), std::string::npos);
    auto owner = std::make_shared<std::vector<std::byte>>(256 * 256 * 4);
    auto wrapped = PixelStorage::wrap(
        owner, owner->data(), 256, 256, 1024, *format_info(uint32_t(Format::B8G8R8X8Unorm)));
    EXPECT_FALSE(wrapped->share().has_value());
}

} // namespace
} // namespace vgpu::virtio_gpu
