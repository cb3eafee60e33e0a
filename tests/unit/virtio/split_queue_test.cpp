// The device side of a split virtqueue (virtio/split_queue.h), driven directly: rings laid out in
// memfd guest RAM by harness::DriverQueue, translated through a real virtio::GuestMemory.
#include <gtest/gtest.h>

#include <chrono>

#include "harness/driver_queue.h"
#include "harness/guest_ram.h"
#include "virtio/guest_memory.h"
#include "virtio/split_queue.h"

namespace vgpu::virtio {
namespace {

using harness::Buffer;
using harness::DriverQueue;
using harness::GuestRam;
using harness::UsedElement;

constexpr uint16_t queue_size = 8;

class SplitQueueTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        for (const auto& region : ram.regions())
            ASSERT_TRUE(memory.add_region(region, ram.fd()).has_value());
        ASSERT_TRUE(queue.set_size(queue_size).has_value());
        ASSERT_TRUE(set_ring_addresses(queue).has_value());
    }

    Result<void> set_ring_addresses(SplitQueue& q)
    {
        return q.set_addresses(ram.frontend_va(driver.desc_gpa()),
            ram.frontend_va(driver.avail_gpa()), ram.frontend_va(driver.used_gpa()));
    }

    void start() { ASSERT_TRUE(queue.start(memory).has_value()); }

    // A call eventfd we keep a second handle to, to count the device's signals.
    int attach_call()
    {
        auto fd = make_eventfd();
        EXPECT_TRUE(fd.has_value());
        auto copy = fd->dup();
        EXPECT_TRUE(copy.has_value());
        call_observer = copy.release_value();
        queue.set_call(fd.release_value());
        return call_observer.get();
    }
    uint64_t signals() { return eventfd_drain(call_observer.get()); }

    // Buffers in low memory, zeroed.
    uint64_t buffer(uint64_t size = 64) { return ram.alloc(size); }
    std::optional<UsedElement> used() { return driver.wait_used(std::chrono::milliseconds(0)); }
    // The driver's used_event (EVENT_IDX), written where the device reads it.
    void set_used_event(uint16_t value)
    {
        ram.put<uint16_t>(driver.avail_gpa() + 4 + 2 * uint64_t(queue_size), value);
    }
    void set_avail_flags(uint16_t flags) { ram.put<uint16_t>(driver.avail_gpa(), flags); }
    // Pops one chain and completes it with `written` bytes.
    void pop_and_push(uint32_t written = 0)
    {
        auto chain = queue.pop(memory);
        ASSERT_TRUE(chain.has_value());
        queue.push(chain->head, written);
    }
    // Expects the next pop to find a malformed chain at `head`, completed with length 0.
    void expect_malformed(uint16_t head)
    {
        auto chain = queue.pop(memory);
        EXPECT_FALSE(chain.has_value());
        EXPECT_EQ(queue.stats().malformed_chains, 1u);
        EXPECT_EQ(queue.stats().chains, 0u);
        auto element = used();
        ASSERT_TRUE(element.has_value());
        EXPECT_EQ(element->id, head);
        EXPECT_EQ(element->length, 0u);
        EXPECT_FALSE(driver.used_pending());
    }

    GuestRam ram { 4 << 20, 1 << 20 };
    GuestMemory memory;
    DriverQueue driver { ram, queue_size };
    SplitQueue queue { 0 };
    Fd call_observer;
};

// ---- configuration --------------------------------------------------------------------------

TEST(SplitQueueConfig, SetSize_Zero_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_size(0).has_value());
    EXPECT_EQ(queue.size(), 0u);
}

TEST(SplitQueueConfig, SetSize_NotPowerOfTwo_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_size(3).has_value());
    EXPECT_FALSE(queue.set_size(100).has_value());
    EXPECT_EQ(queue.size(), 0u);
}

TEST(SplitQueueConfig, SetSize_AboveMax_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_size(2048).has_value());
    EXPECT_FALSE(queue.set_size(0x80000000).has_value());
}

TEST(SplitQueueConfig, SetSize_PowersOfTwoUpToMax_Succeed)
{
    SplitQueue queue(0);

    EXPECT_TRUE(queue.set_size(1).has_value());
    EXPECT_TRUE(queue.set_size(SplitQueue::max_size).has_value());
    EXPECT_EQ(queue.size(), SplitQueue::max_size);
}

TEST(SplitQueueConfig, SetAddresses_MisalignedDescriptorTable_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_addresses(0x1008, 0x2000, 0x3000).has_value());
    EXPECT_FALSE(queue.has_addresses());
}

TEST(SplitQueueConfig, SetAddresses_MisalignedAvailRing_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_addresses(0x1000, 0x2001, 0x3000).has_value());
}

TEST(SplitQueueConfig, SetAddresses_MisalignedUsedRing_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_addresses(0x1000, 0x2002, 0x3002).has_value());
}

TEST(SplitQueueConfig, SetAddresses_MinimallyAligned_Succeeds)
{
    SplitQueue queue(0);

    EXPECT_TRUE(queue.set_addresses(0x1010, 0x2002, 0x3004).has_value());
    EXPECT_TRUE(queue.has_addresses());
}

TEST(SplitQueueConfig, SetBase_Above16Bits_Fails)
{
    SplitQueue queue(0);

    EXPECT_FALSE(queue.set_base(0x10000).has_value());
    EXPECT_EQ(queue.next_avail(), 0u);
}

TEST(SplitQueueConfig, SetBase_SetsNextAvailAndNextUsed)
{
    SplitQueue queue(0);

    ASSERT_TRUE(queue.set_base(0xfffe).has_value());

    EXPECT_EQ(queue.next_avail(), 0xfffe);
    EXPECT_EQ(queue.next_used(), 0xfffe);
}

TEST(SplitQueueConfig, StartWithoutSize_Fails)
{
    SplitQueue queue(0);
    GuestMemory memory;
    ASSERT_TRUE(queue.set_addresses(0x1000, 0x2000, 0x3000).has_value());

    EXPECT_FALSE(queue.start(memory).has_value());
    EXPECT_FALSE(queue.running());
}

TEST(SplitQueueConfig, StartWithoutAddresses_Fails)
{
    SplitQueue queue(0);
    GuestMemory memory;
    ASSERT_TRUE(queue.set_size(8).has_value());

    EXPECT_FALSE(queue.start(memory).has_value());
    EXPECT_FALSE(queue.running());
}

TEST_F(SplitQueueTest, Start_RingsInGuestMemory_Runs)
{
    auto result = queue.start(memory);

    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_TRUE(queue.running());
}

TEST_F(SplitQueueTest, Start_RingAddressesOutsideMemory_Fails)
{
    ASSERT_TRUE(queue.set_addresses(0x1000, 0x2000, 0x3000).has_value()); // not frontend addresses

    auto result = queue.start(memory);

    EXPECT_FALSE(result.has_value());
    EXPECT_FALSE(queue.running());
}

TEST_F(SplitQueueTest, Start_UsedRingStraddlingRegionEnd_Fails)
{
    // 6 + 8 * 8 = 70 bytes of used ring starting 64 bytes before the end of low memory.
    uint64_t used_va = ram.frontend_va(ram.low_size() - 64);
    ASSERT_TRUE(queue
                    .set_addresses(ram.frontend_va(driver.desc_gpa()),
                        ram.frontend_va(driver.avail_gpa()), used_va)
                    .has_value());

    auto result = queue.start(memory);

    EXPECT_FALSE(result.has_value());
    EXPECT_FALSE(queue.running());
}

TEST_F(SplitQueueTest, Start_DescriptorTableLargerThanRemainingMemory_Fails)
{
    // The table of 8 descriptors needs 128 bytes; only 112 are left in the region.
    uint64_t desc_va = ram.frontend_va(ram.low_size() - 112);
    ASSERT_TRUE(queue
                    .set_addresses(desc_va, ram.frontend_va(driver.avail_gpa()),
                        ram.frontend_va(driver.used_gpa()))
                    .has_value());

    auto result = queue.start(memory);

    EXPECT_FALSE(result.has_value());
}

TEST_F(SplitQueueTest, SetSize_WhileRunning_Fails)
{
    start();

    auto result = queue.set_size(16);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(queue.size(), queue_size);
}

TEST_F(SplitQueueTest, SetBase_WhileRunning_Fails)
{
    start();

    auto result = queue.set_base(3);

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(queue.next_avail(), 0u);
}

// ---- popping chains -------------------------------------------------------------------------

TEST_F(SplitQueueTest, Pop_EmptyRing_ReturnsNothing)
{
    start();

    auto chain = queue.pop(memory);

    EXPECT_FALSE(chain.has_value());
    EXPECT_EQ(queue.stats().chains, 0u);
}

TEST_F(SplitQueueTest, Pop_NotStarted_ReturnsNothing)
{
    driver.add({ { buffer(), 16, false } });

    auto chain = queue.pop(memory);

    EXPECT_FALSE(chain.has_value());
    EXPECT_EQ(queue.next_avail(), 0u);
}

TEST_F(SplitQueueTest, Pop_SingleReadableDescriptor_ReturnsThatSegment)
{
    start();
    uint64_t gpa = buffer();
    uint16_t head = driver.add({ { gpa, 24, false } });

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->head, head);
    ASSERT_EQ(chain->readable.size(), 1u);
    EXPECT_EQ(chain->readable[0].gpa, gpa);
    EXPECT_EQ(chain->readable[0].length, 24u);
    EXPECT_EQ(chain->readable_bytes, 24u);
    EXPECT_TRUE(chain->writable.empty());
    EXPECT_EQ(queue.next_avail(), 1u);
    EXPECT_EQ(queue.stats().chains, 1u);
}

TEST_F(SplitQueueTest, Pop_ReadableThenWritable_SplitsInOrder)
{
    start();
    uint64_t r1 = buffer(), r2 = buffer(), w1 = buffer(), w2 = buffer();
    driver.add({ { r1, 10, false }, { r2, 20, false }, { w1, 30, true }, { w2, 40, true } });

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    ASSERT_EQ(chain->readable.size(), 2u);
    ASSERT_EQ(chain->writable.size(), 2u);
    EXPECT_EQ(chain->readable[0].gpa, r1);
    EXPECT_EQ(chain->readable[1].gpa, r2);
    EXPECT_EQ(chain->writable[0].gpa, w1);
    EXPECT_EQ(chain->writable[1].gpa, w2);
    EXPECT_EQ(chain->readable_bytes, 30u);
    EXPECT_EQ(chain->writable_bytes, 70u);
}

TEST_F(SplitQueueTest, Pop_BufferInHighMemory_IsAccepted)
{
    start();
    uint64_t high = GuestRam::high_base + 0x1000;
    driver.add({ { high, 64, true } });

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    ASSERT_EQ(chain->writable.size(), 1u);
    EXPECT_EQ(chain->writable[0].gpa, high);
}

TEST_F(SplitQueueTest, Pop_ZeroLengthDescriptor_IsSkipped)
{
    start();
    uint64_t gpa = buffer();
    driver.add({ { gpa, 0, false }, { gpa, 8, true } });

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    EXPECT_TRUE(chain->readable.empty());
    ASSERT_EQ(chain->writable.size(), 1u);
}

TEST_F(SplitQueueTest, Pop_TwoChains_ComeInAvailOrder)
{
    start();
    uint16_t first = driver.add({ { buffer(), 8, false } });
    uint16_t second = driver.add({ { buffer(), 8, false } });

    auto a = queue.pop(memory);
    auto b = queue.pop(memory);
    auto c = queue.pop(memory);

    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(a->head, first);
    EXPECT_EQ(b->head, second);
    EXPECT_FALSE(c.has_value());
}

TEST_F(SplitQueueTest, Pop_IndirectChain_ReturnsItsSegments)
{
    queue.set_indirect(true);
    start();
    uint64_t r = buffer(), w = buffer();
    uint16_t head = driver.add({ { r, 16, false }, { w, 32, true } }, /*indirect=*/true);

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->head, head);
    ASSERT_EQ(chain->readable.size(), 1u);
    ASSERT_EQ(chain->writable.size(), 1u);
    EXPECT_EQ(chain->readable[0].gpa, r);
    EXPECT_EQ(chain->writable[0].gpa, w);
    EXPECT_EQ(chain->writable[0].length, 32u);
}

TEST_F(SplitQueueTest, Pop_IndirectChainAfterDirectDescriptors_IsAccepted)
{
    // A direct readable descriptor chained to an indirect one (the spec allows the indirect
    // descriptor anywhere in the chain, as the last one).
    queue.set_indirect(true);
    start();
    uint64_t table = ram.alloc(32, 16);
    uint64_t r = buffer(), w = buffer(), header = buffer();
    ram.put(table, VirtqDesc { r, 8, VIRTQ_DESC_F_NEXT, 1 });
    ram.put(table + 16, VirtqDesc { w, 8, VIRTQ_DESC_F_WRITE, 0 });
    driver.write_desc(0, { header, 4, VIRTQ_DESC_F_NEXT, 1 });
    driver.write_desc(1, { table, 32, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    ASSERT_EQ(chain->readable.size(), 2u);
    EXPECT_EQ(chain->readable[0].gpa, header);
    EXPECT_EQ(chain->readable[1].gpa, r);
    ASSERT_EQ(chain->writable.size(), 1u);
}

// ---- malformed chains -----------------------------------------------------------------------

TEST_F(SplitQueueTest, Pop_IndirectWithoutFeature_IsMalformed)
{
    start(); // indirect not negotiated
    uint16_t head = driver.add({ { buffer(), 16, false } }, /*indirect=*/true);

    expect_malformed(head);
}

TEST_F(SplitQueueTest, Pop_DescriptorLoop_CompletesWithLengthZero)
{
    start();
    uint64_t gpa = buffer();
    driver.write_desc(0, { gpa, 16, VIRTQ_DESC_F_NEXT, 1 });
    driver.write_desc(1, { gpa, 16, VIRTQ_DESC_F_NEXT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_MalformedChainThenValidChain_ValidOneIsReturned)
{
    start();
    uint64_t gpa = buffer();
    driver.write_desc(0, { gpa, 16, VIRTQ_DESC_F_NEXT, 0 }); // loops onto itself
    driver.make_available(0);
    driver.write_desc(1, { gpa, 16, 0, 0 });
    driver.make_available(1);

    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->head, 1u);
    EXPECT_EQ(queue.stats().malformed_chains, 1u);
    EXPECT_EQ(queue.next_used(), 1u); // the malformed one was completed
}

TEST_F(SplitQueueTest, Pop_NextIndexOutOfTable_IsMalformed)
{
    start();
    driver.write_desc(2, { buffer(), 16, VIRTQ_DESC_F_NEXT, queue_size });
    driver.make_available(2);

    expect_malformed(2);
}

TEST_F(SplitQueueTest, Pop_NestedIndirect_IsMalformed)
{
    queue.set_indirect(true);
    start();
    uint64_t inner = ram.alloc(16, 16);
    ram.put(inner, VirtqDesc { buffer(), 8, 0, 0 });
    uint64_t outer = ram.alloc(16, 16);
    ram.put(outer, VirtqDesc { inner, 16, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.write_desc(3, { outer, 16, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(3);

    expect_malformed(3);
}

TEST_F(SplitQueueTest, Pop_IndirectWithNext_IsMalformed)
{
    queue.set_indirect(true);
    start();
    uint64_t table = ram.alloc(16, 16);
    ram.put(table, VirtqDesc { buffer(), 8, 0, 0 });
    driver.write_desc(0, { table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1 });
    driver.write_desc(1, { buffer(), 8, VIRTQ_DESC_F_WRITE, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_IndirectTableLengthNotMultipleOf16_IsMalformed)
{
    queue.set_indirect(true);
    start();
    uint64_t table = ram.alloc(32, 16);
    ram.put(table, VirtqDesc { buffer(), 8, 0, 0 });
    driver.write_desc(0, { table, 24, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_IndirectTableOfLengthZero_IsMalformed)
{
    queue.set_indirect(true);
    start();
    driver.write_desc(0, { ram.alloc(16, 16), 0, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_IndirectTableLargerThanQueue_IsMalformed)
{
    queue.set_indirect(true);
    start();
    uint64_t table = ram.alloc(16 * (queue_size + 1), 16);
    driver.write_desc(0, { table, 16 * (queue_size + 1), VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_IndirectTableOutsideGuestMemory_IsMalformed)
{
    queue.set_indirect(true);
    start();
    // Starts in low memory and runs 16 bytes past its end.
    driver.write_desc(0, { ram.low_size() - 16, 32, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_LoopInsideIndirectTable_IsMalformed)
{
    queue.set_indirect(true);
    start();
    uint64_t table = ram.alloc(32, 16);
    uint64_t gpa = buffer();
    ram.put(table, VirtqDesc { gpa, 8, VIRTQ_DESC_F_NEXT, 1 });
    ram.put(table + 16, VirtqDesc { gpa, 8, VIRTQ_DESC_F_NEXT, 0 });
    driver.write_desc(0, { table, 32, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(0);

    expect_malformed(0);
}

TEST_F(SplitQueueTest, Pop_BufferOutsideGuestMemory_IsMalformed)
{
    start();
    uint16_t head = driver.add(
        { { ram.low_size() + 0x1000, 16, false } }); // in the hole below 4 GiB

    expect_malformed(head);
}

TEST_F(SplitQueueTest, Pop_BufferStraddlingRegionEnd_IsMalformed)
{
    start();
    uint16_t head = driver.add({ { ram.low_size() - 8, 16, true } });

    expect_malformed(head);
}

TEST_F(SplitQueueTest, Pop_ReadableAfterWritable_IsMalformed)
{
    start();
    uint16_t head = driver.add({ { buffer(), 16, true }, { buffer(), 16, false } });

    expect_malformed(head);
}

TEST_F(SplitQueueTest, Pop_HeadIndexOutOfTable_IsMalformed)
{
    start();
    driver.make_available(queue_size);

    expect_malformed(queue_size);
}

TEST_F(SplitQueueTest, Pop_AvailIndexJumpsPastQueueSize_BreaksTheQueue)
{
    start();
    driver.add({ { buffer(), 16, false } });
    driver.set_avail_idx(queue_size + 1);

    auto chain = queue.pop(memory);

    EXPECT_FALSE(chain.has_value());
    EXPECT_TRUE(queue.broken());
    EXPECT_EQ(queue.next_avail(), 0u);
    EXPECT_EQ(driver.used_idx(), 0u);
}

TEST_F(SplitQueueTest, Pop_AfterBroken_NothingIsPoppedEvenWithASaneIndex)
{
    start();
    driver.add({ { buffer(), 16, false } });
    driver.set_avail_idx(queue_size + 1);
    ASSERT_FALSE(queue.pop(memory).has_value());
    driver.set_avail_idx(1);

    auto chain = queue.pop(memory);

    EXPECT_FALSE(chain.has_value());
    EXPECT_TRUE(queue.broken());
    EXPECT_FALSE(queue.arm_and_check());
}

TEST_F(SplitQueueTest, Pop_AvailIndexAheadByExactlyQueueSize_IsNotBroken)
{
    start();
    for (uint16_t i = 0; i < queue_size; ++i)
        driver.add({ { buffer(), 8, false } });

    int popped = 0;
    while (queue.pop(memory))
        ++popped;

    EXPECT_EQ(popped, queue_size);
    EXPECT_FALSE(queue.broken());
}

TEST_F(SplitQueueTest, Reset_ClearsBrokenState)
{
    start();
    driver.set_avail_idx(queue_size + 1);
    ASSERT_FALSE(queue.pop(memory).has_value());
    ASSERT_TRUE(queue.broken());

    queue.reset();

    EXPECT_FALSE(queue.broken());
    EXPECT_FALSE(queue.running());
    EXPECT_EQ(queue.size(), 0u);
    EXPECT_FALSE(queue.has_addresses());
    EXPECT_EQ(queue.index(), 0u);
}

// ---- push, stop, base -----------------------------------------------------------------------

TEST_F(SplitQueueTest, Push_WritesUsedElementAndIndex)
{
    start();
    uint16_t head = driver.add({ { buffer(), 8, false }, { buffer(), 64, true } });
    auto chain = queue.pop(memory);
    ASSERT_TRUE(chain.has_value());

    queue.push(chain->head, 42);

    EXPECT_EQ(driver.used_idx(), 1u);
    auto element = used();
    ASSERT_TRUE(element.has_value());
    EXPECT_EQ(element->id, head);
    EXPECT_EQ(element->length, 42u);
}

TEST_F(SplitQueueTest, Stop_ReturnsNextAvailAndStopsPopping)
{
    start();
    driver.add({ { buffer(), 8, false } });
    driver.add({ { buffer(), 8, false } });
    driver.add({ { buffer(), 8, false } });
    ASSERT_TRUE(queue.pop(memory).has_value());
    ASSERT_TRUE(queue.pop(memory).has_value());

    uint16_t next = queue.stop();

    EXPECT_EQ(next, 2u);
    EXPECT_FALSE(queue.running());
    EXPECT_FALSE(queue.pop(memory).has_value());
}

TEST_F(SplitQueueTest, SetBase_RestartsAtThatAvailAndUsedIndex)
{
    ASSERT_TRUE(queue.set_base(5).has_value());
    start();
    driver.set_avail_idx(5);
    uint16_t head = driver.add({ { buffer(), 8, false } }); // ring slot 5

    auto chain = queue.pop(memory);
    ASSERT_TRUE(chain.has_value());
    queue.push(chain->head, 3);

    EXPECT_EQ(chain->head, head);
    EXPECT_EQ(queue.next_avail(), 6u);
    EXPECT_EQ(driver.used_idx(), 6u);
    uint64_t slot5 = driver.used_gpa() + 4 + 8 * 5;
    EXPECT_EQ(ram.get<uint32_t>(slot5), head);
    EXPECT_EQ(ram.get<uint32_t>(slot5 + 4), 3u);
}

TEST_F(SplitQueueTest, StopAndStartAgain_ContinuesAtTheSameIndex)
{
    start();
    driver.add({ { buffer(), 8, false } });
    uint16_t second = driver.add({ { buffer(), 8, false } });
    ASSERT_TRUE(queue.pop(memory).has_value());
    ASSERT_EQ(queue.stop(), 1u);

    start();
    auto chain = queue.pop(memory);

    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->head, second);
}

// ---- notification -------------------------------------------------------------------------

TEST_F(SplitQueueTest, Notify_WithoutEventIdxOrFlags_Signals)
{
    start();
    attach_call();
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(signals(), 1u);
    EXPECT_EQ(queue.stats().notifications, 1u);
}

TEST_F(SplitQueueTest, Notify_NoInterruptFlagWithoutEventIdx_DoesNotSignal)
{
    start();
    attach_call();
    set_avail_flags(1); // VIRTQ_AVAIL_F_NO_INTERRUPT
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(signals(), 0u);
    EXPECT_EQ(queue.stats().notifications, 0u);
}

TEST_F(SplitQueueTest, Notify_NothingPushedSinceLastSignal_DoesNotSignalAgain)
{
    start();
    attach_call();
    driver.add({ { buffer(), 8, false } });
    pop_and_push();
    queue.notify();
    ASSERT_EQ(signals(), 1u);

    queue.notify();

    EXPECT_EQ(signals(), 0u);
    EXPECT_EQ(queue.stats().notifications, 1u);
}

TEST_F(SplitQueueTest, Notify_WithoutCallFd_DoesNothing)
{
    start();
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(queue.stats().notifications, 0u);
}

class EventIdxTest : public SplitQueueTest {
protected:
    void SetUp() override
    {
        SplitQueueTest::SetUp();
        queue.set_event_idx(true);
        start();
        attach_call();
        // The first completion is always signalled (nothing was signalled before).
        set_used_event(0);
        driver.add({ { buffer(), 8, false } });
        pop_and_push();
        queue.notify();
        ASSERT_EQ(signals(), 1u);
        ASSERT_EQ(queue.next_used(), 1u);
    }
};

TEST_F(EventIdxTest, UsedEventFarAhead_DoesNotSignal)
{
    set_used_event(100);
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(signals(), 0u);
    EXPECT_EQ(queue.stats().notifications, 1u);
}

TEST_F(EventIdxTest, UsedEventReached_Signals)
{
    // used_event 1: the driver wants an interrupt once used entry 1 is written (idx 1 -> 2).
    set_used_event(1);
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(signals(), 1u);
    EXPECT_EQ(queue.stats().notifications, 2u);
}

TEST_F(EventIdxTest, UsedEventOneAhead_SignalsOnlyWhenPassed)
{
    set_used_event(2);
    driver.add({ { buffer(), 8, false } });
    driver.add({ { buffer(), 8, false } });
    pop_and_push(); // used idx 2: entry 2 not yet written
    queue.notify();
    uint64_t before = signals();
    pop_and_push(); // used idx 3: entry 2 written

    queue.notify();

    EXPECT_EQ(before, 0u);
    EXPECT_EQ(signals(), 1u);
}

TEST_F(EventIdxTest, NoInterruptFlag_IsIgnoredWithEventIdx)
{
    set_avail_flags(1);
    set_used_event(1);
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    queue.notify();

    EXPECT_EQ(signals(), 1u);
}

TEST_F(EventIdxTest, ArmAndCheck_WritesAvailEventAndReportsNothingNew)
{
    bool more = queue.arm_and_check();

    EXPECT_FALSE(more);
    EXPECT_EQ(driver.avail_event(), 1u);
}

TEST_F(EventIdxTest, ArmAndCheck_BuffersArrivedMeanwhile_ReportsThem)
{
    driver.add({ { buffer(), 8, false } });

    bool more = queue.arm_and_check();

    EXPECT_TRUE(more);
    EXPECT_EQ(driver.avail_event(), 1u);
}

TEST_F(SplitQueueTest, ArmAndCheck_WithoutEventIdx_LeavesAvailEventAlone)
{
    start();
    driver.add({ { buffer(), 8, false } });
    pop_and_push();

    bool more = queue.arm_and_check();

    EXPECT_FALSE(more);
    EXPECT_EQ(driver.avail_event(), 0u);
}

TEST_F(SplitQueueTest, ArmAndCheck_WithoutEventIdxAndPendingBuffers_ReportsThem)
{
    start();
    driver.add({ { buffer(), 8, false } });

    EXPECT_TRUE(queue.arm_and_check());
}

TEST_F(SplitQueueTest, ArmAndCheck_Stopped_ReportsNothing)
{
    driver.add({ { buffer(), 8, false } });

    EXPECT_FALSE(queue.arm_and_check());
}

} // namespace
} // namespace vgpu::virtio
