// CrcCapture computes its CRCs on a worker thread after the flush, but always of the frame the
// flush showed: an overwrite of the pixels waits for their job, and reading waits for all jobs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "base/crc32c.h"
#include "display/capture/crc_capture.h"

namespace vgpu::display::capture {
namespace {

using namespace std::chrono_literals;

// A bit-by-bit CRC-32C of canonical pixels (B, G, R, 0), independent of the implementation.
uint32_t reference_crc(const std::vector<uint32_t>& pixels)
{
    uint32_t crc = 0xFFFFFFFF;
    for (uint32_t p : pixels)
        for (int i = 0; i < 4; ++i) {
            crc ^= i == 3 ? 0 : (p >> (8 * i)) & 0xff;
            for (int k = 0; k < 8; ++k)
                crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
        }
    return ~crc;
}

class CrcCaptureTest : public ::testing::Test {
protected:
    void SetUp() override { make(200, 10); }
    void make(uint32_t width, uint32_t height)
    {
        W = width;
        H = height;
        loop = std::move(*EventLoop::create());
        capture = std::make_unique<CrcCapture>(*loop);
        pixels = virtio_gpu::PixelStorage::allocate(
            W, H, W * 4, *virtio_gpu::format_info(uint32_t(virtio_gpu::Format::B8G8R8X8Unorm)));
        output.index = 0;
        virtio_gpu::ScanoutSource source;
        source.format = pixels->format();
        source.resource_width = W;
        source.resource_height = H;
        source.stride = W * 4;
        source.rect = Rect { 0, 0, W, H };
        source.pixels = pixels;
        output.source = source;
    }
    // The guest's transfer: the device announces it, then writes.
    std::vector<uint32_t> draw(uint32_t value)
    {
        capture->pixels_will_change(*pixels);
        std::vector<uint32_t> frame(size_t(W) * H, value);
        std::memcpy(pixels->data(), frame.data(), pixels->size());
        pixels->changed(Rect { 0, 0, W, H });
        return frame;
    }
    void flush()
    {
        ++output.generation;
        capture->output_damaged(output, Rect { 0, 0, W, H });
    }

    uint32_t W = 0, H = 0;
    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<CrcCapture> capture;
    std::shared_ptr<virtio_gpu::PixelStorage> pixels;
    Output output;
};

TEST_F(CrcCaptureTest, Flush_IsChecksummedOffTheLoopAndHeardOnIt)
{
    make(1024, 768); // too much to checksum at once
    capture->start(0);
    auto frame = draw(0x112233);
    std::vector<CrcEntry> heard;
    capture->add_entry_listener([&](uint32_t, const CrcEntry& e) { heard.push_back(e); });

    flush();
    EXPECT_TRUE(heard.empty()); // the listener only runs from the loop
    for (int turn = 0; turn < 100 && heard.empty(); ++turn)
        ASSERT_TRUE(loop->run_once(100ms).has_value());

    EXPECT_EQ(capture->pending(), 0u);
    EXPECT_EQ(capture->stats().jobs, 1u);
    EXPECT_EQ(capture->stats().inline_jobs, 0u);
    ASSERT_EQ(heard.size(), 1u);
    EXPECT_EQ(heard[0].frame, 1u);
    EXPECT_EQ(heard[0].crc, reference_crc(frame));
}

TEST_F(CrcCaptureTest, CheapFlush_IsChecksummedAtOnce)
{
    make(1024, 768);
    capture->start(0);
    // A transfer that checksummed its tiles on the way leaves only the joins to do.
    capture->pixels_will_change(*pixels);
    std::vector<uint32_t> frame(size_t(W) * H, 0x00abcdef);
    pixels->copy_in(0, reinterpret_cast<const std::byte*>(frame.data()), pixels->size(), true);
    std::vector<CrcEntry> heard;
    capture->add_entry_listener([&](uint32_t, const CrcEntry& e) { heard.push_back(e); });

    flush();

    ASSERT_EQ(heard.size(), 1u);
    EXPECT_EQ(heard[0].crc, crc::crc32c_xrgb(0, frame.data(), frame.size()));
    EXPECT_EQ(capture->stats().inline_jobs, 1u);
    EXPECT_EQ(capture->stats().jobs, 0u);
}

TEST_F(CrcCaptureTest, PixelsOverwrittenRightAfterTheFlush_StillGiveTheFlushedFrame)
{
    capture->start(0);
    auto first = draw(0x0000ff);
    flush();
    auto second = draw(0x00ff00); // the guest's next transfer, before the loop ran
    flush();

    auto drained = capture->read(0);

    ASSERT_EQ(drained.entries.size(), 2u);
    EXPECT_EQ(drained.entries[0].frame, 1u);
    EXPECT_EQ(drained.entries[0].crc, reference_crc(first));
    EXPECT_EQ(drained.entries[1].frame, 2u);
    EXPECT_EQ(drained.entries[1].crc, reference_crc(second));
    EXPECT_NE(drained.entries[0].crc, drained.entries[1].crc);
}

TEST_F(CrcCaptureTest, OverwriteRightAfterEachFlush_WaitsAndEveryEntryIsItsOwnFrame)
{
    // Frames big enough that the worker is still at work when the next transfer comes.
    make(1024, 768);
    capture->start(0);
    // Whether the worker is still at a frame when the next transfer comes is the scheduler's
    // choice (a busy machine may run the worker to the end between two flushes): every round must
    // give each entry its own frame, and rounds go on until one of them had to wait (at most 10;
    // one almost always does).
    uint32_t rounds = 0;
    for (; rounds < 10 && capture->stats().overwrite_waits == 0; ++rounds) {
        std::vector<uint32_t> expected;
        for (uint32_t i = 0; i < 50; ++i) {
            // The CRC function itself is checked against the bitwise reference elsewhere; here
            // what counts is which frame each entry is of.
            auto frame = draw(0x010101 * (i + 1 + rounds));
            expected.push_back(crc::crc32c_xrgb(0, frame.data(), frame.size()));
            flush();
        }

        auto drained = capture->read(0);

        ASSERT_EQ(drained.entries.size(), expected.size());
        for (size_t i = 0; i < expected.size(); ++i)
            EXPECT_EQ(drained.entries[i].crc, expected[i]) << "round " << rounds << " entry " << i;
    }
    EXPECT_GT(capture->stats().overwrite_waits, 0u);
    EXPECT_EQ(capture->stats().jobs, 50u * rounds);
}

TEST_F(CrcCaptureTest, OtherPixelsChanging_DoNotWait)
{
    capture->start(0);
    auto frame = draw(0x445566);
    flush();
    auto other = virtio_gpu::PixelStorage::allocate(W, H, W * 4, pixels->format());

    capture->pixels_will_change(*other);

    EXPECT_EQ(capture->stats().overwrite_waits, 0u);
    auto drained = capture->read(0);
    ASSERT_EQ(drained.entries.size(), 1u);
    EXPECT_EQ(drained.entries[0].crc, reference_crc(frame));
}

TEST_F(CrcCaptureTest, ChecksumDuringTheCopy_IsAskedForWhileCaptureIsOn)
{
    auto back_buffer = virtio_gpu::PixelStorage::allocate(W, H, W * 4, pixels->format());
    EXPECT_FALSE(capture->pixels_will_change(*pixels));

    capture->start(0);
    EXPECT_TRUE(capture->pixels_will_change(*pixels));
    EXPECT_TRUE(capture->pixels_will_change(*back_buffer)); // a page flip's next frame
    capture->stop(0);

    EXPECT_FALSE(capture->pixels_will_change(*pixels));
}

TEST_F(CrcCaptureTest, CaptureOff_RecordsNothing)
{
    draw(0x445566);
    flush();
    EXPECT_EQ(capture->pending(), 0u);
    EXPECT_EQ(capture->stats().jobs, 0u);
    capture->start(0);
    EXPECT_TRUE(capture->read(0).entries.empty());
}

TEST_F(CrcCaptureTest, MoreFlushesThanTheRing_AreCountedAsOverflow)
{
    capture->start(0);
    for (size_t i = 0; i < CrcCapture::ring_size + 5; ++i) {
        draw(uint32_t(i));
        flush();
    }

    auto drained = capture->read(0);

    EXPECT_EQ(drained.entries.size(), CrcCapture::ring_size);
    EXPECT_EQ(drained.overflow, 5u);
    EXPECT_EQ(drained.entries.back().frame, CrcCapture::ring_size);
    EXPECT_EQ(capture->entries_total(), CrcCapture::ring_size + 5);
}

TEST_F(CrcCaptureTest, DestroyedBeforeItsTaskRuns_TheTaskDoesNothing)
{
    capture->start(0);
    draw(1);
    flush();
    capture.reset();

    EXPECT_TRUE(loop->run_once(100ms).has_value()); // would touch the destroyed capture
}

} // namespace
} // namespace vgpu::display::capture
