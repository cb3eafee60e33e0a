// Checked arithmetic and range checks (base/checked.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "base/checked.h"

namespace vgpu {
namespace {

constexpr uint32_t u32_max = std::numeric_limits<uint32_t>::max();
constexpr uint64_t u64_max = std::numeric_limits<uint64_t>::max();

TEST(CheckedAdd, NoOverflow_ReturnsSum)
{
    auto sum = checked_add<uint32_t>(u32_max - 1, 1);

    ASSERT_TRUE(sum.has_value());
    EXPECT_EQ(*sum, u32_max);
}

TEST(CheckedAdd, UnsignedOverflow_ReturnsNothing)
{
    auto sum = checked_add<uint32_t>(u32_max, 1);

    EXPECT_FALSE(sum.has_value());
}

TEST(CheckedAdd, Uint64Overflow_ReturnsNothing)
{
    auto sum = checked_add<uint64_t>(u64_max / 2 + 1, u64_max / 2 + 1);

    EXPECT_FALSE(sum.has_value());
}

TEST(CheckedAdd, SignedOverflow_ReturnsNothing)
{
    auto sum = checked_add<int32_t>(std::numeric_limits<int32_t>::max(), 1);

    EXPECT_FALSE(sum.has_value());
}

TEST(CheckedAdd, SignedUnderflow_ReturnsNothing)
{
    auto sum = checked_add<int32_t>(std::numeric_limits<int32_t>::min(), -1);

    EXPECT_FALSE(sum.has_value());
}

TEST(CheckedMul, NoOverflow_ReturnsProduct)
{
    auto product = checked_mul<uint64_t>(uint64_t(1) << 32, uint64_t(1) << 31);

    ASSERT_TRUE(product.has_value());
    EXPECT_EQ(*product, uint64_t(1) << 63);
}

TEST(CheckedMul, Overflow_ReturnsNothing)
{
    auto product = checked_mul<uint64_t>(uint64_t(1) << 32, uint64_t(1) << 32);

    EXPECT_FALSE(product.has_value());
}

TEST(CheckedMul, StrideTimesHeightOverflowingUint32_ReturnsNothing)
{
    auto product = checked_mul<uint32_t>(65536 * 4, 65536);

    EXPECT_FALSE(product.has_value());
}

TEST(CheckedMul, ByZero_ReturnsZero)
{
    auto product = checked_mul<uint64_t>(u64_max, 0);

    ASSERT_TRUE(product.has_value());
    EXPECT_EQ(*product, 0u);
}

TEST(RangeWithin, WholeRange_IsWithin) { EXPECT_TRUE(range_within<uint64_t>(0, 100, 100)); }

TEST(RangeWithin, EndingExactlyAtTotal_IsWithin)
{
    EXPECT_TRUE(range_within<uint64_t>(60, 40, 100));
}

TEST(RangeWithin, OneBytePastTotal_IsNotWithin)
{
    EXPECT_FALSE(range_within<uint64_t>(60, 41, 100));
}

TEST(RangeWithin, EmptyRangeAtTotal_IsWithin) { EXPECT_TRUE(range_within<uint64_t>(100, 0, 100)); }

TEST(RangeWithin, OffsetPastTotal_IsNotWithin)
{
    EXPECT_FALSE(range_within<uint64_t>(101, 0, 100));
}

TEST(RangeWithin, LengthLargerThanTotal_IsNotWithin)
{
    EXPECT_FALSE(range_within<uint64_t>(0, 101, 100));
}

TEST(RangeWithin, OffsetPlusLengthWrapping_IsNotWithin)
{
    // The naive check `offset + length <= total` would pass: 16 + (2^64 - 8) wraps to 8.
    EXPECT_FALSE(range_within<uint64_t>(16, u64_max - 7, 100));
}

TEST(RangeWithin, Uint32Wrap_IsNotWithin) { EXPECT_FALSE(range_within<uint32_t>(2, u32_max, 16)); }

TEST(RangeWithin, ZeroTotal_OnlyEmptyRangeAtZeroIsWithin)
{
    EXPECT_TRUE(range_within<uint32_t>(0, 0, 0));
    EXPECT_FALSE(range_within<uint32_t>(0, 1, 0));
}

TEST(RangesOverlap, AdjacentRanges_DoNotOverlap)
{
    EXPECT_FALSE(ranges_overlap(0, 0x1000, 0x1000, 0x1000));
    EXPECT_FALSE(ranges_overlap(0x1000, 0x1000, 0, 0x1000));
}

TEST(RangesOverlap, SharingOneByte_Overlap)
{
    EXPECT_TRUE(ranges_overlap(0, 0x1001, 0x1000, 0x1000));
    EXPECT_TRUE(ranges_overlap(0x1000, 0x1000, 0, 0x1001));
}

TEST(RangesOverlap, OneContainingTheOther_Overlap)
{
    EXPECT_TRUE(ranges_overlap(0, 0x10000, 0x2000, 0x10));
    EXPECT_TRUE(ranges_overlap(0x2000, 0x10, 0, 0x10000));
}

TEST(RangesOverlap, DisjointRanges_DoNotOverlap)
{
    EXPECT_FALSE(ranges_overlap(0, 0x10, uint64_t(4) << 30, 0x10));
}

TEST(RangesOverlap, IdenticalRanges_Overlap) { EXPECT_TRUE(ranges_overlap(0x5000, 1, 0x5000, 1)); }

} // namespace
} // namespace vgpu
