// Logging on libfmt (libstdc++ 12 has no <format>). One line per message: on stderr, or in a file
// or syslog for a backend that libvirt starts daemonized with stderr on /dev/null.
// Messages caused by the guest or a frontend go through VGPU_LOG_GUEST, which is rate-limited per
// call site: a guest must not be able to flood the host's log.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "base/result.h"

namespace vgpu::log {

enum class Level : int {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4
};

// The name log lines carry ("vgpu-display" unless a program says otherwise; a string literal).
void set_program(const char* name);
void set_level(Level level);
Level level();
std::optional<Level> parse_level(std::string_view name);
inline bool enabled(Level l) { return static_cast<int>(l) <= static_cast<int>(level()); }
void write(Level level, std::string_view message);

// Where lines go; chosen once at start-up, before other threads run. A file is opened for appending
// (its directory made if need be) and its lines carry the wall-clock time and our pid, since one
// file spans restarts; syslog's lines go to LOG_DAEMON as "vgpu-display[PID]".
Result<void> log_to_file(const std::string& path);
void log_to_syslog();
// "stderr", "syslog" or the file's path.
std::string destination();

// A token bucket: `burst` messages at once, then one every `interval`. Suppressed messages are
// counted and reported with the next message that passes.
class RateLimiter {
public:
    RateLimiter(unsigned burst, std::chrono::milliseconds interval)
        : m_burst(burst)
        , m_interval(interval)
        , m_tokens(burst)
    {
    }
    // Returns true when a message may be written now; `suppressed` receives the number of
    // messages dropped since the last one that passed.
    bool allow(uint64_t& suppressed);
    // Same, at a given time (for tests).
    bool allow_at(std::chrono::steady_clock::time_point now, uint64_t& suppressed);

private:
    unsigned m_burst;
    std::chrono::milliseconds m_interval;
    unsigned m_tokens;
    std::chrono::steady_clock::time_point m_last_refill {};
    uint64_t m_suppressed = 0;
};

template <typename... Args>
void message(Level l, fmt::format_string<Args...> f, Args&&... args)
{
    if (enabled(l))
        write(l, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void limited(RateLimiter& limiter, Level l, fmt::format_string<Args...> f, Args&&... args)
{
    if (!enabled(l))
        return;
    uint64_t suppressed = 0;
    if (!limiter.allow(suppressed))
        return;
    auto text = fmt::format(f, std::forward<Args>(args)...);
    if (suppressed)
        text += fmt::format(" ({} similar messages suppressed)", suppressed);
    write(l, text);
}

} // namespace vgpu::log

#define VGPU_LOG_ERROR(...) ::vgpu::log::message(::vgpu::log::Level::Error, __VA_ARGS__)
#define VGPU_LOG_WARN(...) ::vgpu::log::message(::vgpu::log::Level::Warn, __VA_ARGS__)
#define VGPU_LOG_INFO(...) ::vgpu::log::message(::vgpu::log::Level::Info, __VA_ARGS__)
#define VGPU_LOG_DEBUG(...) ::vgpu::log::message(::vgpu::log::Level::Debug, __VA_ARGS__)
// Caused by a peer (the guest, the frontend, a control client): rate-limited per call site (10
// at once, then one a second).
#define VGPU_LOG_GUEST(level, ...)                                                                 \
    do {                                                                                           \
        static ::vgpu::log::RateLimiter _vgpu_limiter { 10, std::chrono::milliseconds(1000) };     \
        ::vgpu::log::limited(_vgpu_limiter, ::vgpu::log::Level::level, __VA_ARGS__);               \
    } while (0)
