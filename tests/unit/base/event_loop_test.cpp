// The epoll loop (base/event_loop.h): watches, timers, post() and stop(), on real eventfds.
#include <gtest/gtest.h>

#include <sys/epoll.h>

#include <chrono>
#include <thread>

#include "base/event_loop.h"

namespace vgpu {
namespace {

using namespace std::chrono_literals;

class EventLoopTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto created = EventLoop::create();
        ASSERT_TRUE(created.has_value()) << created.error().message;
        loop = created.release_value();
        baseline_watches = loop->watch_count();
    }

    Fd eventfd()
    {
        auto fd = make_eventfd();
        EXPECT_TRUE(fd.has_value());
        return fd ? fd.release_value() : Fd();
    }

    // Runs the loop until `done` or a deadline far beyond what the test needs.
    template <typename Predicate>
    bool run_until(Predicate done, std::chrono::milliseconds limit = 2000ms)
    {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            if (!loop->run_once(10ms))
                return false;
        }
        return true;
    }

    std::unique_ptr<EventLoop> loop;
    size_t baseline_watches = 0;
};

TEST_F(EventLoopTest, WatchedEventfdSignalled_CallbackRunsWithEpollin)
{
    Fd fd = eventfd();
    int calls = 0;
    uint32_t seen_events = 0;
    auto id = loop->watch(fd.get(), EPOLLIN, [&](uint32_t events) {
        ++calls;
        seen_events = events;
        eventfd_drain(fd.get());
    });
    ASSERT_TRUE(id.has_value());
    ASSERT_TRUE(eventfd_signal(fd.get()).has_value());

    ASSERT_TRUE(loop->run_once(100ms).has_value());

    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(seen_events & EPOLLIN);
    EXPECT_EQ(loop->watch_count(), baseline_watches + 1);
}

TEST_F(EventLoopTest, WatchedEventfdNotSignalled_CallbackDoesNotRun)
{
    Fd fd = eventfd();
    int calls = 0;
    ASSERT_TRUE(loop->watch(fd.get(), EPOLLIN, [&](uint32_t) { ++calls; }).has_value());

    ASSERT_TRUE(loop->run_once(0ms).has_value());

    EXPECT_EQ(calls, 0);
}

TEST_F(EventLoopTest, Unwatched_CallbackNoLongerRuns)
{
    Fd fd = eventfd();
    int calls = 0;
    auto id = loop->watch(fd.get(), EPOLLIN, [&](uint32_t) { ++calls; });
    ASSERT_TRUE(id.has_value());

    loop->unwatch(*id);
    ASSERT_TRUE(eventfd_signal(fd.get()).has_value());
    ASSERT_TRUE(loop->run_once(0ms).has_value());

    EXPECT_EQ(calls, 0);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, UnwatchUnknownId_IsHarmless)
{
    loop->unwatch(987654);

    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, UnwatchFromOwnCallback_RunsOnceAndIsRemoved)
{
    Fd fd = eventfd();
    int calls = 0;
    EventLoop::WatchId id = 0;
    auto watched = loop->watch(fd.get(), EPOLLIN, [&](uint32_t) {
        ++calls;
        loop->unwatch(id);
        // Touch captured state after removing ourselves: the entry must still be alive.
        ++calls;
    });
    ASSERT_TRUE(watched.has_value());
    id = *watched;
    ASSERT_TRUE(eventfd_signal(fd.get()).has_value()); // level-triggered: stays ready

    ASSERT_TRUE(loop->run_once(100ms).has_value());
    ASSERT_TRUE(loop->run_once(0ms).has_value());

    EXPECT_EQ(calls, 2);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, CallbackUnwatchingAnotherReadyWatch_OtherDoesNotRunInSameRound)
{
    Fd first = eventfd();
    Fd second = eventfd();
    int calls = 0;
    EventLoop::WatchId first_id = 0, second_id = 0;
    first_id = *loop->watch(first.get(), EPOLLIN, [&](uint32_t) {
        ++calls;
        loop->unwatch(second_id);
        loop->unwatch(first_id);
    });
    second_id = *loop->watch(second.get(), EPOLLIN, [&](uint32_t) {
        ++calls;
        loop->unwatch(first_id);
        loop->unwatch(second_id);
    });
    ASSERT_TRUE(eventfd_signal(first.get()).has_value());
    ASSERT_TRUE(eventfd_signal(second.get()).has_value());

    ASSERT_TRUE(loop->run_once(100ms).has_value());

    EXPECT_EQ(calls, 1);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, WatchInvalidFd_Fails)
{
    auto id = loop->watch(-1, EPOLLIN, [](uint32_t) {});

    ASSERT_FALSE(id.has_value());
    EXPECT_EQ(id.error().errno_value, EBADF);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, ModifyUnknownId_Fails)
{
    auto result = loop->modify(987654, EPOLLIN);

    EXPECT_FALSE(result.has_value());
}

TEST_F(EventLoopTest, ModifyToNoEvents_StopsCallbacks)
{
    Fd fd = eventfd();
    int calls = 0;
    auto id = loop->watch(fd.get(), EPOLLIN, [&](uint32_t) { ++calls; });
    ASSERT_TRUE(id.has_value());
    ASSERT_TRUE(eventfd_signal(fd.get()).has_value());

    ASSERT_TRUE(loop->modify(*id, 0).has_value());
    ASSERT_TRUE(loop->run_once(0ms).has_value());

    EXPECT_EQ(calls, 0);
}

TEST_F(EventLoopTest, OneShotTimer_FiresOnceAndRemovesItself)
{
    int fired = 0;
    auto id = loop->add_timer(1ms, 0ns, [&] { ++fired; });
    ASSERT_TRUE(id.has_value());
    ASSERT_EQ(loop->watch_count(), baseline_watches + 1);

    ASSERT_TRUE(run_until([&] { return fired > 0; }));
    ASSERT_TRUE(loop->run_once(20ms).has_value());

    EXPECT_EQ(fired, 1);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, ZeroDelayOneShotTimer_StillFires)
{
    int fired = 0;
    ASSERT_TRUE(loop->add_timer(0ns, 0ns, [&] { ++fired; }).has_value());

    bool done = run_until([&] { return fired > 0; }, 500ms);

    EXPECT_TRUE(done);
    EXPECT_EQ(fired, 1);
}

TEST_F(EventLoopTest, RepeatingTimer_FiresUntilUnwatched)
{
    int fired = 0;
    auto id = loop->add_timer(1ms, 1ms, [&] { ++fired; });
    ASSERT_TRUE(id.has_value());

    ASSERT_TRUE(run_until([&] { return fired >= 3; }));
    loop->unwatch(*id);
    int fired_at_unwatch = fired;
    ASSERT_TRUE(loop->run_once(20ms).has_value());

    EXPECT_EQ(fired, fired_at_unwatch);
    EXPECT_EQ(loop->watch_count(), baseline_watches);
}

TEST_F(EventLoopTest, TimerNotYetDue_DoesNotFire)
{
    int fired = 0;
    ASSERT_TRUE(loop->add_timer(10s, 0ns, [&] { ++fired; }).has_value());

    ASSERT_TRUE(loop->run_once(5ms).has_value());

    EXPECT_EQ(fired, 0);
}

TEST_F(EventLoopTest, PostFromAnotherThread_RunsOnLoopThread)
{
    std::thread::id ran_on;
    bool ran = false;
    std::thread poster([&] {
        loop->post([&] {
            ran = true;
            ran_on = std::this_thread::get_id();
        });
    });
    poster.join();

    ASSERT_TRUE(run_until([&] { return ran; }, 1000ms));

    EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_F(EventLoopTest, SeveralPosts_RunInOrder)
{
    std::vector<int> order;
    loop->post([&] { order.push_back(1); });
    loop->post([&] { order.push_back(2); });
    loop->post([&] { order.push_back(3); });

    ASSERT_TRUE(run_until([&] { return order.size() == 3; }, 1000ms));

    EXPECT_EQ(order, (std::vector<int> { 1, 2, 3 }));
}

TEST_F(EventLoopTest, StopFromAnotherThread_MakesRunReturn)
{
    std::thread stopper([&] {
        std::this_thread::sleep_for(5ms);
        loop->stop();
    });

    auto result = loop->run();
    stopper.join();

    EXPECT_TRUE(result.has_value());
    EXPECT_TRUE(loop->stopped());
}

TEST_F(EventLoopTest, StopFromPostedTask_MakesRunReturn)
{
    int ran_before_stop = 0;
    loop->post([&] { ++ran_before_stop; });
    loop->post([&] { loop->stop(); });

    auto result = loop->run();

    EXPECT_TRUE(result.has_value());
    EXPECT_EQ(ran_before_stop, 1);
    EXPECT_TRUE(loop->stopped());
}

TEST_F(EventLoopTest, NewLoop_IsNotStopped) { EXPECT_FALSE(loop->stopped()); }

} // namespace
} // namespace vgpu
