// The log rate limiter and level parsing (base/log.h).
#include <gtest/gtest.h>

#include <chrono>

#include "base/log.h"

namespace vgpu::log {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Any fixed, non-epoch point: the limiter treats the epoch as "never refilled".
const Clock::time_point t0 = Clock::time_point {} + 1000h;

// Spends the whole burst at `at`; returns how many calls passed.
unsigned drain(RateLimiter& limiter, Clock::time_point at, unsigned attempts)
{
    unsigned passed = 0;
    for (unsigned i = 0; i < attempts; ++i) {
        uint64_t suppressed = 0;
        if (limiter.allow_at(at, suppressed))
            ++passed;
    }
    return passed;
}

TEST(RateLimiter, Burst_AllowsExactlyBurstMessagesAtOnce)
{
    RateLimiter limiter(3, 1000ms);

    unsigned passed = drain(limiter, t0, 10);

    EXPECT_EQ(passed, 3u);
}

TEST(RateLimiter, FirstMessages_ReportNothingSuppressed)
{
    RateLimiter limiter(2, 1000ms);
    uint64_t suppressed = 99;

    bool allowed = limiter.allow_at(t0, suppressed);

    EXPECT_TRUE(allowed);
    EXPECT_EQ(suppressed, 0u);
}

TEST(RateLimiter, BeforeOneInterval_StillDenies)
{
    RateLimiter limiter(2, 1000ms);
    drain(limiter, t0, 2);
    uint64_t suppressed = 0;

    bool allowed = limiter.allow_at(t0 + 999ms, suppressed);

    EXPECT_FALSE(allowed);
}

TEST(RateLimiter, AfterOneInterval_AllowsOneMore)
{
    RateLimiter limiter(2, 1000ms);
    drain(limiter, t0, 2);

    unsigned passed = drain(limiter, t0 + 1000ms, 5);

    EXPECT_EQ(passed, 1u);
}

TEST(RateLimiter, Refill_IsCappedAtBurst)
{
    RateLimiter limiter(3, 1000ms);
    drain(limiter, t0, 3);

    unsigned passed = drain(limiter, t0 + 60s, 10);

    EXPECT_EQ(passed, 3u);
}

TEST(RateLimiter, PartialIntervals_Accumulate)
{
    // Refill time is kept from the last whole interval, so 600 ms + 600 ms makes one token.
    RateLimiter limiter(1, 1000ms);
    drain(limiter, t0, 1);
    uint64_t suppressed = 0;
    ASSERT_FALSE(limiter.allow_at(t0 + 600ms, suppressed));

    bool allowed = limiter.allow_at(t0 + 1200ms, suppressed);

    EXPECT_TRUE(allowed);
}

TEST(RateLimiter, PassingMessage_ReportsSuppressedCount)
{
    RateLimiter limiter(1, 1000ms);
    drain(limiter, t0, 5); // 1 passes, 4 are suppressed
    uint64_t suppressed = 0;

    bool allowed = limiter.allow_at(t0 + 1000ms, suppressed);

    ASSERT_TRUE(allowed);
    EXPECT_EQ(suppressed, 4u);
}

TEST(RateLimiter, SuppressedCount_IsReportedOnlyOnce)
{
    RateLimiter limiter(2, 1000ms);
    drain(limiter, t0, 5); // 2 pass, 3 are suppressed
    uint64_t first = 0;
    ASSERT_TRUE(limiter.allow_at(t0 + 2000ms, first));
    ASSERT_EQ(first, 3u);
    uint64_t second = 99;

    bool allowed = limiter.allow_at(t0 + 2000ms, second);

    ASSERT_TRUE(allowed);
    EXPECT_EQ(second, 0u);
}

TEST(ParseLevel, KnownNames_MapToLevels)
{
    EXPECT_EQ(parse_level("error"), Level::Error);
    EXPECT_EQ(parse_level("warn"), Level::Warn);
    EXPECT_EQ(parse_level("info"), Level::Info);
    EXPECT_EQ(parse_level("debug"), Level::Debug);
    EXPECT_EQ(parse_level("trace"), Level::Trace);
}

TEST(ParseLevel, UnknownOrDifferentlySpelledNames_AreRejected)
{
    EXPECT_EQ(parse_level(""), std::nullopt);
    EXPECT_EQ(parse_level("INFO"), std::nullopt);
    EXPECT_EQ(parse_level("warning"), std::nullopt);
    EXPECT_EQ(parse_level("debug "), std::nullopt);
}

TEST(LogLevel, SetLevel_ControlsWhichLevelsAreEnabled)
{
    Level saved = level();

    set_level(Level::Warn);
    bool warn_enabled = enabled(Level::Warn);
    bool info_enabled = enabled(Level::Info);
    set_level(saved);

    EXPECT_TRUE(warn_enabled);
    EXPECT_FALSE(info_enabled);
}

} // namespace
} // namespace vgpu::log
