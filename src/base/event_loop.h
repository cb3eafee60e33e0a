// A single-threaded epoll loop. It owns no device state itself: the device, the vhost connection
// and the display sockets register their descriptors here. Everything runs on the thread that
// calls run(); post(), wake() and stop() may be called from other threads (workers post results).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/thread_annotations.h"

namespace vgpu {

class EventLoop {
public:
    using WatchId = uint64_t;
    using FdCallback = std::function<void(uint32_t epoll_events)>;

    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();

    // Calls `callback` with the ready epoll events while `fd` is ready. The fd stays owned by the
    // caller and must be unwatched before it is closed.
    Result<WatchId> watch(int fd, uint32_t epoll_events, FdCallback callback);
    Result<void> modify(WatchId id, uint32_t epoll_events);
    // Safe to call from inside any callback, including the watch's own.
    void unwatch(WatchId id);

    // A timerfd-backed timer: first after `delay`, then every `interval` (zero: once). The id is
    // removed with unwatch(); a one-shot timer removes itself after it fires.
    Result<WatchId> add_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds interval,
        std::function<void()> callback);

    // Thread-safe: run `task` on the loop thread.
    void post(std::function<void()> task) EXCLUDES(m_post_mutex);
    // Thread-safe: make run() return after the current iteration.
    void stop();

    Result<void> run();
    // One epoll_wait of at most `timeout` (negative: forever) and its callbacks.
    Result<void> run_once(std::chrono::milliseconds timeout);
    bool stopped() const { return m_stop_requested; }
    size_t watch_count() const { return m_entries.size(); }

private:
    EventLoop(Fd epoll, Fd wake);
    struct Entry {
        int fd;
        FdCallback callback;
        Fd owned; // timerfds belong to the loop
    };
    void run_posted() EXCLUDES(m_post_mutex);

    Fd m_epoll;
    Fd m_wake;
    WatchId m_next_id = 1;
    WatchId m_wake_id = 0;
    std::unordered_map<WatchId, std::unique_ptr<Entry>> m_entries;
    // Entries removed during a dispatch round live until the round ends, so that a callback can
    // remove itself.
    std::vector<std::unique_ptr<Entry>> m_retired;
    Mutex m_post_mutex;
    std::vector<std::function<void()>> m_posted GUARDED_BY(m_post_mutex);
    std::atomic<bool> m_stop_requested { false };
};

} // namespace vgpu
