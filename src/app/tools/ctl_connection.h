// vgpu-ctl's side of the control socket (docs/control.md): one JSON object per line both ways,
// a greeting first, replies matched to requests by id, events kept aside until asked for.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu::ctl {

using json = nlohmann::json;

// vgpu-ctl's exit codes.
enum class Exit : int {
    Ok = 0,
    Failed = 1, // the server answered an error, or a local step (an image, a file) failed
    Usage = 2, // a bad command line
    Connection = 3, // cannot connect, connection lost, no reply in time, protocol error
};

// Why vgpu-ctl stops: the exit code and a one-line message for stderr (empty: nothing to say).
struct Failure {
    Exit exit = Exit::Failed;
    std::string message;
};
template <typename T>
using CtlResult = Result<T, Failure>;

template <typename... Args>
Failure failure(Exit exit, fmt::format_string<Args...> format, Args&&... args)
{
    return Failure { exit, fmt::format(format, std::forward<Args>(args)...) };
}

// json::dump that never throws: strings we did not get from the parser may hold invalid UTF-8.
std::string dump(const json& value, int indent = -1);

class Connection {
public:
    // Connects to the socket at `path` and waits up to `timeout` for the greeting.
    static CtlResult<std::unique_ptr<Connection>> open(
        const std::string& path, std::chrono::milliseconds timeout);

    const json& greeting() const { return m_greeting; }
    // Sends `request` (given an "id" if it has none) and returns the whole reply that echoes its
    // id: {"return": ...} or {"error": ...}. Replies with other ids are skipped; events that
    // arrive meanwhile are queued for next_event.
    CtlResult<json> exchange(json request);
    // exchange({"execute": name, "arguments": arguments}), unwrapped: the "return" value, or a
    // Failure (Exit::Failed) that carries the error's class and desc.
    CtlResult<json> execute(std::string_view name, json arguments = json::object());
    // The next event, queued ones first. nullopt when `interrupt_fd` (a signalfd, or -1) becomes
    // readable first. Waits without a time limit.
    CtlResult<std::optional<json>> next_event(int interrupt_fd);

private:
    Connection(Fd socket, std::string path, std::chrono::milliseconds timeout)
        : m_socket(std::move(socket))
        , m_path(std::move(path))
        , m_timeout(timeout)
    {
    }
    using Deadline = std::optional<std::chrono::steady_clock::time_point>;
    CtlResult<void> send_line(const std::string& line);
    // The next message; nullopt when interrupted. Fails on EOF, timeout, bad JSON, non-objects.
    CtlResult<std::optional<json>> read_message(Deadline deadline, int interrupt_fd);
    CtlResult<std::optional<std::string>> read_line(Deadline deadline, int interrupt_fd);

    Fd m_socket;
    std::string m_path;
    std::chrono::milliseconds m_timeout;
    std::string m_in;
    size_t m_scanned = 0; // bytes of m_in known to hold no newline
    json m_greeting;
    std::deque<json> m_events;
    uint64_t m_next_id = 1;
};

// The error reply's class and desc as one line: "CLASS: desc".
std::string describe_error(const json& error);

} // namespace vgpu::ctl
