#include "base/offload.h"

#include <sys/resource.h>
#include <unistd.h>

namespace vgpu {

Offload::Offload(EventLoop& loop, size_t capacity)
    : m_loop(loop)
    , m_capacity(capacity)
{
}

Offload::~Offload()
{
    {
        MutexLock lock(m_mutex);
        m_quit = true;
        m_jobs.clear();
    }
    m_wake.notify_all();
    if (m_worker.joinable())
        m_worker.join();
}

bool Offload::submit(Job job)
{
    {
        MutexLock lock(m_mutex);
        if (m_in_flight >= m_capacity)
            return false;
        ++m_in_flight;
        m_jobs.push_back(std::move(job));
        if (!m_worker.joinable())
            m_worker = std::thread([this] { run(); });
    }
    m_wake.notify_one();
    return true;
}

size_t Offload::in_flight() const
{
    MutexLock lock(m_mutex);
    return m_in_flight;
}

void Offload::run()
{
    // Background work: on a machine with as many busy threads as cores, the device loop and the
    // guest's vCPUs go first. (Linux applies a nice value per thread.)
    (void)::setpriority(PRIO_PROCESS, id_t(::gettid()), 10);
    MutexLock lock(m_mutex);
    for (;;) {
        while (!m_quit && m_jobs.empty())
            m_wake.wait(lock);
        if (m_quit)
            return;
        Job job = std::move(m_jobs.front());
        m_jobs.pop_front();
        lock.unlock();
        Continuation continuation = job();
        job = nullptr; // what the job held (a snapshot) goes now, off the loop
        lock.lock();
        --m_in_flight;
        if (continuation)
            m_loop.post(m_lifetime.guard(std::move(continuation)));
    }
}

} // namespace vgpu
