// Offload: jobs run on the worker, their continuations on the loop, at most `capacity` in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/event_loop.h"
#include "base/offload.h"

namespace vgpu {
namespace {

using namespace std::chrono_literals;

void run_until(EventLoop& loop, const std::function<bool()>& done)
{
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline)
        ASSERT_TRUE(loop.run_once(10ms));
}

TEST(Offload, JobRunsOffTheLoop_ItsContinuationOnIt)
{
    auto loop = std::move(*EventLoop::create());
    Offload offload(*loop, 2);
    auto loop_thread = std::this_thread::get_id();
    std::thread::id job_thread, continuation_thread;
    bool done = false;
    ASSERT_TRUE(offload.submit([&]() -> Offload::Continuation {
        job_thread = std::this_thread::get_id();
        return [&] {
            continuation_thread = std::this_thread::get_id();
            done = true;
        };
    }));
    run_until(*loop, [&] { return done; });
    EXPECT_TRUE(done);
    EXPECT_NE(job_thread, loop_thread);
    EXPECT_EQ(continuation_thread, loop_thread);
    EXPECT_EQ(offload.in_flight(), 0u);
}

TEST(Offload, AtCapacity_SubmitIsRefused_UntilAJobFinishes)
{
    auto loop = std::move(*EventLoop::create());
    Offload offload(*loop, 2);
    std::atomic<bool> release { false };
    int finished = 0;
    auto blocking = [&]() -> Offload::Continuation {
        while (!release)
            std::this_thread::sleep_for(1ms);
        return [&] { ++finished; };
    };
    ASSERT_TRUE(offload.submit(blocking));
    ASSERT_TRUE(offload.submit(blocking));
    EXPECT_FALSE(offload.submit(blocking)) << "a third job was queued over the capacity of 2";
    EXPECT_EQ(offload.in_flight(), 2u);
    release = true;
    run_until(*loop, [&] { return finished == 2; });
    EXPECT_EQ(finished, 2);
    EXPECT_TRUE(offload.submit([]() -> Offload::Continuation { return {}; }));
}

TEST(Offload, DestroyedWithAContinuationPending_ItNeverRuns)
{
    auto loop = std::move(*EventLoop::create());
    bool ran = false;
    std::atomic<bool> job_done { false };
    {
        Offload offload(*loop, 1);
        ASSERT_TRUE(offload.submit([&]() -> Offload::Continuation {
            job_done = true;
            return [&] { ran = true; };
        }));
        while (!job_done)
            std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(10ms); // the continuation is posted, not yet run
    }
    for (int i = 0; i < 5; ++i)
        ASSERT_TRUE(loop->run_once(10ms));
    EXPECT_FALSE(ran);
}

} // namespace
} // namespace vgpu
