#include "base/event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>

#include "base/log.h"

namespace vgpu {

Result<std::unique_ptr<EventLoop>> EventLoop::create()
{
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return Error::from_errno("epoll_create1");
    Fd epoll(ep);
    auto wake = TRY(make_eventfd());
    std::unique_ptr<EventLoop> loop(new EventLoop(std::move(epoll), std::move(wake)));
    loop->m_wake_id = TRY(loop->watch(loop->m_wake.get(), EPOLLIN, [raw = loop.get()](uint32_t) {
        eventfd_drain(raw->m_wake.get());
        raw->run_posted();
    }));
    return loop;
}

EventLoop::EventLoop(Fd epoll, Fd wake)
    : m_epoll(std::move(epoll))
    , m_wake(std::move(wake))
{
}

EventLoop::~EventLoop() = default;

Result<EventLoop::WatchId> EventLoop::watch(int fd, uint32_t epoll_events, FdCallback callback)
{
    WatchId id = m_next_id++;
    epoll_event ev {};
    ev.events = epoll_events;
    ev.data.u64 = id;
    if (::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
        return Error::from_errno(fmt::format("epoll_ctl(ADD, {})", fd));
    m_entries.emplace(id, std::make_unique<Entry>(Entry { fd, std::move(callback), Fd() }));
    return id;
}

Result<void> EventLoop::modify(WatchId id, uint32_t epoll_events)
{
    auto it = m_entries.find(id);
    if (it == m_entries.end())
        return Error::format("epoll modify: unknown watch {}", id);
    epoll_event ev {};
    ev.events = epoll_events;
    ev.data.u64 = id;
    if (::epoll_ctl(m_epoll.get(), EPOLL_CTL_MOD, it->second->fd, &ev) < 0)
        return Error::from_errno("epoll_ctl(MOD)");
    return {};
}

void EventLoop::unwatch(WatchId id)
{
    auto it = m_entries.find(id);
    if (it == m_entries.end())
        return;
    ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
    m_retired.push_back(std::move(it->second));
    m_entries.erase(it);
}

Result<EventLoop::WatchId> EventLoop::add_timer(std::chrono::nanoseconds delay,
    std::chrono::nanoseconds interval, std::function<void()> callback)
{
    int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tfd < 0)
        return Error::from_errno("timerfd_create");
    Fd timer(tfd);
    auto to_timespec = [](std::chrono::nanoseconds ns) {
        return timespec { static_cast<time_t>(ns.count() / 1000000000),
            static_cast<long>(ns.count() % 1000000000) };
    };
    itimerspec spec {};
    // A zero it_value disarms a timerfd: the earliest expiry is 1 ns.
    spec.it_value = to_timespec(std::max(delay, std::chrono::nanoseconds(1)));
    spec.it_interval = to_timespec(interval);
    if (::timerfd_settime(timer.get(), 0, &spec, nullptr) < 0)
        return Error::from_errno("timerfd_settime");
    bool one_shot = interval.count() == 0;
    auto id = std::make_shared<WatchId>(0);
    int raw_fd = timer.get();
    *id = TRY(watch(
        raw_fd, EPOLLIN, [this, raw_fd, one_shot, id, callback = std::move(callback)](uint32_t) {
            uint64_t expirations = 0;
            if (::read(raw_fd, &expirations, sizeof(expirations)) != sizeof(expirations))
                return;
            if (one_shot)
                unwatch(*id);
            callback();
        }));
    m_entries[*id]->owned = std::move(timer);
    return *id;
}

void EventLoop::post(std::function<void()> task)
{
    {
        MutexLock lock(m_post_mutex);
        m_posted.push_back(std::move(task));
    }
    (void)eventfd_signal(m_wake.get());
}

void EventLoop::stop()
{
    m_stop_requested = true;
    (void)eventfd_signal(m_wake.get());
}

void EventLoop::run_posted()
{
    std::vector<std::function<void()>> tasks;
    {
        MutexLock lock(m_post_mutex);
        tasks.swap(m_posted);
    }
    for (auto& task : tasks)
        task();
}

Result<void> EventLoop::run_once(std::chrono::milliseconds timeout)
{
    std::array<epoll_event, 32> events {};
    int n = ::epoll_wait(m_epoll.get(), events.data(), int(events.size()), int(timeout.count()));
    if (n < 0) {
        if (errno == EINTR)
            return {};
        return Error::from_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
        auto it = m_entries.find(events[size_t(i)].data.u64);
        if (it == m_entries.end())
            continue; // removed by an earlier callback in this round
        Entry* entry = it->second.get();
        entry->callback(events[size_t(i)].events);
    }
    m_retired.clear();
    return {};
}

Result<void> EventLoop::run()
{
    while (!m_stop_requested)
        TRY(run_once(std::chrono::milliseconds(-1)));
    return {};
}

} // namespace vgpu
