// A client of the backend's JSON control socket (docs/control.md) for tests and benchmarks: one
// JSON object per line both ways; replies are matched by id, events are kept aside.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/fd.h"

namespace vgpu::harness {

class ControlClient {
public:
    using json = nlohmann::json;
    // Connects (retrying for a few seconds while the backend starts) and reads the greeting.
    static ControlClient connect(const std::string& path);

    const json& greeting() const { return m_greeting; }
    // Sends {"execute": name, "arguments": arguments, "id": N} and waits for the reply with that
    // id; nullopt if the connection closed or timed out.
    std::optional<json> execute(const std::string& name, const json& arguments = json::object(),
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    // The "return" value of a successful reply (throws with the error otherwise).
    json call(const std::string& name, const json& arguments = json::object());
    // Sends raw bytes (malformed-message tests).
    void send_raw(std::string_view bytes);
    // The next message of any kind (reply or event).
    std::optional<json> read_message(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    // The next event (events that arrived while waiting for replies come first).
    std::optional<json> next_event(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    bool closed_by_server(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
    const Fd& socket() const { return m_socket; }

private:
    explicit ControlClient(Fd socket)
        : m_socket(std::move(socket))
    {
    }
    std::optional<std::string> read_line(std::chrono::milliseconds timeout);

    Fd m_socket;
    std::string m_in;
    json m_greeting;
    std::deque<json> m_events;
    uint64_t m_next_id = 1;
};

} // namespace vgpu::harness
