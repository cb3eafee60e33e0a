#include "base/log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <syslog.h>
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
// Set once at start-up (log_to_file, log_to_syslog), read by every thread.
std::atomic<int> g_file { -1 };
std::atomic<bool> g_syslog { false };
std::string g_file_path;

int syslog_priority(Level l)
{
    switch (l) {
    case Level::Error:
        return LOG_ERR;
    case Level::Warn:
        return LOG_WARNING;
    case Level::Info:
        return LOG_INFO;
    case Level::Debug:
    case Level::Trace:
        return LOG_DEBUG;
    }
    return LOG_INFO;
}

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

// Set once at start-up by programs other than the backend (vgpu-vnc).
static const char* g_program = "vgpu-display";

void set_program(const char* name) { g_program = name; }

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
    if (g_syslog.load(std::memory_order_relaxed)) {
        ::syslog(syslog_priority(l), "%.*s", int(text.size()), text.data());
        return;
    }
    if (int fd = g_file.load(std::memory_order_relaxed); fd >= 0) {
        timespec now {};
        clock_gettime(CLOCK_REALTIME, &now);
        tm utc {};
        gmtime_r(&now.tv_sec, &utc);
        auto line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {}[{}] {}: {}\n",
            utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
            now.tv_nsec / 1000000, g_program, ::getpid(), level_name(l), text);
        [[maybe_unused]] auto n = ::write(fd, line.data(), line.size());
        return;
    }
    timespec ts {};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    auto line = fmt::format("[{:>6}.{:03}] {} {}: {}\n", ts.tv_sec, ts.tv_nsec / 1000000, g_program,
        level_name(l), text);
    // One write(2) per line so that lines from concurrent processes do not interleave.
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

Result<void> log_to_file(const std::string& path)
{
    std::error_code error;
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty())
        std::filesystem::create_directories(parent, error);
    if (error)
        return Error::format("{}: {}", parent.string(), error.message());
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        return Error::from_errno(path);
    g_file_path = path;
    int old = g_file.exchange(fd);
    g_syslog.store(false);
    if (old >= 0)
        ::close(old);
    return {};
}

void log_to_syslog()
{
    ::openlog(g_program, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    g_syslog.store(true);
}

std::string destination()
{
    if (g_syslog.load())
        return "syslog";
    if (g_file.load() >= 0)
        return g_file_path;
    return "stderr";
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
