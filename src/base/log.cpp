#include "base/log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <unistd.h>
#include <utility>

#include "base/verify.h"

namespace vgpu {

void verification_failed(const char* expression, const char* file, int line)
{
    std::fprintf(stderr, "vgpu-display: internal error: VERIFY(%s) failed at %s:%d\n", expression,
        file, line);
    std::abort();
}

} // namespace vgpu

namespace vgpu::log {

namespace {
std::atomic<int> g_level { static_cast<int>(Level::Info) };

const char* level_name(Level l)
{
    switch (l) {
    case Level::Error:
        return "error";
    case Level::Warn:
        return "warn";
    case Level::Info:
        return "info";
    case Level::Debug:
        return "debug";
    case Level::Trace:
        return "trace";
    }
    return "?";
}
} // namespace

void set_level(Level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

std::optional<Level> parse_level(std::string_view name)
{
    for (auto l : { Level::Error, Level::Warn, Level::Info, Level::Debug, Level::Trace })
        if (name == level_name(l))
            return l;
    return std::nullopt;
}

void write(Level l, std::string_view text)
{
    timespec ts {};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    auto line = fmt::format("[{:>6}.{:03}] vgpu-display {}: {}\n", ts.tv_sec, ts.tv_nsec / 1000000,
        level_name(l), text);
    // One write(2) per line so that lines from concurrent processes do not interleave.
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

bool RateLimiter::allow(uint64_t& suppressed)
{
    return allow_at(std::chrono::steady_clock::now(), suppressed);
}

bool RateLimiter::allow_at(std::chrono::steady_clock::time_point now, uint64_t& suppressed)
{
    if (m_last_refill == std::chrono::steady_clock::time_point {})
        m_last_refill = now;
    if (m_interval.count() > 0) {
        auto elapsed = now - m_last_refill;
        auto refills = static_cast<uint64_t>(elapsed / m_interval);
        if (refills > 0) {
            m_tokens = static_cast<unsigned>(std::min<uint64_t>(m_burst, m_tokens + refills));
            m_last_refill += refills * m_interval;
        }
    }
    if (m_tokens == 0) {
        ++m_suppressed;
        return false;
    }
    --m_tokens;
    suppressed = std::exchange(m_suppressed, 0);
    return true;
}

} // namespace vgpu::log
