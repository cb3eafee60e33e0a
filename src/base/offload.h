// Offload: work that must not run on the device loop (encoding a screendump, writing its file),
// done by one worker thread. At most `capacity` jobs are in flight (queued or running): a caller
// that finds it full answers "busy" instead of queueing without bound. A job runs on the worker
// and returns a continuation, which runs on the loop; neither runs once the Offload is gone.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>

#include "base/event_loop.h"
#include "base/lifetime.h"
#include "base/thread_annotations.h"

namespace vgpu {

class Offload {
public:
    using Continuation = std::function<void()>;
    using Job = std::function<Continuation()>;

    Offload(EventLoop& loop, size_t capacity);
    // Waits for the running job; queued jobs and pending continuations are dropped.
    ~Offload();
    Offload(const Offload&) = delete;
    Offload& operator=(const Offload&) = delete;

    // Queues `job`; false (and nothing queued) when `capacity` jobs are in flight.
    bool submit(Job job) EXCLUDES(m_mutex);
    size_t in_flight() const EXCLUDES(m_mutex);
    size_t capacity() const { return m_capacity; }

private:
    void run() EXCLUDES(m_mutex);

    EventLoop& m_loop;
    const size_t m_capacity;
    Lifetime m_lifetime; // guards the continuations posted to the loop
    mutable Mutex m_mutex;
    CondVar m_wake;
    std::deque<Job> m_jobs GUARDED_BY(m_mutex);
    size_t m_in_flight GUARDED_BY(m_mutex) = 0;
    bool m_quit GUARDED_BY(m_mutex) = false;
    std::thread m_worker; // started with the first job
};

} // namespace vgpu
