#include "display/capture/crc_capture.h"

#include "base/log.h"

namespace vgpu::display::capture {

CrcCapture::CrcCapture(EventLoop& loop)
    : m_loop(loop)
{
}

CrcCapture::~CrcCapture()
{
    {
        MutexLock lock(m_mutex);
        m_quit = true;
    }
    m_changed.notify_all();
    if (m_worker.joinable())
        m_worker.join();
}

void CrcCapture::start(uint32_t output)
{
    resolve();
    auto& ring = m_rings[output];
    ring.entries.clear();
    ring.overflow = 0;
    ring.active = true;
}

void CrcCapture::stop(uint32_t output)
{
    resolve();
    m_rings[output].active = false;
}

CrcCapture::Drained CrcCapture::read(uint32_t output)
{
    resolve();
    auto& ring = m_rings[output];
    Drained drained { { ring.entries.begin(), ring.entries.end() }, ring.overflow };
    ring.entries.clear();
    ring.overflow = 0;
    return drained;
}

void CrcCapture::output_damaged(const Output& output, Rect)
{
    if (!m_rings[output.index].active || !output.source)
        return;
    const auto& source = *output.source;
    ++m_entries_total;
    {
        MutexLock lock(m_mutex);
        if (m_jobs.empty() && !m_running && source.pixels->crc_cost(source.rect) < inline_cost) {
            lock.unlock();
            ++m_inline_jobs;
            collect(); // results before this one first
            add(output.index, CrcEntry { output.generation, source.pixels->rect_crc(source.rect) });
            return;
        }
        m_jobs.push_back({ output.index, output.generation, source.pixels, source.rect });
        ++m_jobs_total;
        if (!m_worker.joinable())
            m_worker = std::thread([this] { run_worker(); });
    }
    m_changed.notify_all();
}

bool CrcCapture::uses(const virtio_gpu::PixelStorage* pixels) const
{
    if (m_running == pixels)
        return true;
    for (const auto& job : m_jobs)
        if (job.pixels.get() == pixels)
            return true;
    return false;
}

bool CrcCapture::pixels_will_change(const virtio_gpu::PixelStorage& pixels)
{
    {
        MutexLock lock(m_mutex);
        if (uses(&pixels)) {
            ++m_overwrite_waits;
            while (uses(&pixels))
                m_changed.wait(lock);
        }
    }
    for (const auto& ring : m_rings)
        if (ring.active)
            return true;
    return false;
}

void CrcCapture::resolve()
{
    {
        MutexLock lock(m_mutex);
        while (!m_jobs.empty() || m_running)
            m_changed.wait(lock);
    }
    collect();
}

size_t CrcCapture::pending() const
{
    MutexLock lock(m_mutex);
    return m_jobs.size() + (m_running ? 1 : 0) + m_done.size();
}

CrcCaptureStats CrcCapture::stats() const
{
    MutexLock lock(m_mutex);
    return CrcCaptureStats { m_jobs_total, m_inline_jobs, m_overwrite_waits };
}

void CrcCapture::run_worker()
{
    MutexLock lock(m_mutex);
    for (;;) {
        while (!m_quit && m_jobs.empty())
            m_changed.wait(lock);
        if (m_quit)
            return;
        Job job = std::move(m_jobs.front());
        m_jobs.pop_front();
        m_running = job.pixels.get();
        lock.unlock();
        // Only this thread touches the pixels (and their CRC cache) now: the loop waits in
        // pixels_will_change before it writes them.
        uint32_t crc = job.pixels->rect_crc(job.rect);
        job.pixels.reset();
        lock.lock();
        m_running = nullptr;
        m_done.push_back({ job.output, CrcEntry { job.frame, crc } });
        if (!m_collect_posted) {
            m_collect_posted = true;
            m_loop.post(m_lifetime.guard([this] { collect(); }));
        }
        m_changed.notify_all();
    }
}

void CrcCapture::collect()
{
    std::deque<Done> done;
    {
        MutexLock lock(m_mutex);
        done.swap(m_done);
        m_collect_posted = false;
    }
    for (const auto& d : done)
        add(d.output, d.entry);
}

void CrcCapture::add(uint32_t output, const CrcEntry& entry)
{
    auto& ring = m_rings[output];
    if (!ring.active)
        return; // stopped after the flush: nobody asked for it any more
    if (ring.entries.size() >= ring_size) {
        if (ring.overflow++ == 0)
            VGPU_LOG_WARN(
                "CRC capture on output {}: ring of {} entries full, entries are being dropped",
                output, ring_size);
    } else {
        ring.entries.push_back(entry);
    }
    for (const auto& [id, listener] : m_listeners)
        listener(output, entry);
}

} // namespace vgpu::display::capture
