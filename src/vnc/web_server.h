// The browser view's HTTP side (docs/vnc.md): our page and noVNC's ES modules as static files,
// and WebSocket upgrades handed, unread, to libvncserver (which speaks RFB over WebSocket on any
// connection it is given). Many connections at once (a browser loads noVNC's modules in
// parallel; libvncserver's own HTTP server serves one at a time), never blocking: answers go out
// as the client reads them. Only GET and HEAD, only files
// under the root, no directory listings. A page on another site must not drive the guest through
// the visitor's browser: an upgrade is taken only from our own page (its Origin names the Host
// it was sent to) and, on loopback, only for a loopback Host name (no DNS rebinding).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vnc/poll_set.h"
#include "vnc/tcp.h"

namespace vgpu::vnc {

struct WebCounters {
    uint64_t requests = 0; // files served (200)
    uint64_t refused = 0; // 4xx answers
    uint64_t upgrades = 0; // WebSocket connections handed to libvncserver
};

// What a request's start line and headers say, as the server needs them.
struct HttpRequest {
    std::string method, target, host, origin, upgrade;
    size_t header_bytes = 0; // through the blank line
};
// Parses the head of a request once all of it (up to the blank line) is in `bytes`; nullopt
// while more is to come, an error for a malformed one.
Result<std::optional<HttpRequest>> parse_http_request(std::string_view bytes);
// The file under `root` that `target` names ("/" is index.html), or an error with the status
// code to answer (400, 403, 404); "." segments, "..", NUL and a query string are dealt with here.
struct HttpPath {
    std::string path;
    int status = 200;
};
HttpPath resolve_target(const std::string& root, std::string_view target);
// The Content-Type for a file name (text/javascript for .js: browsers refuse ES modules served
// as anything else).
std::string_view content_type(std::string_view path);

class WebServer {
public:
    using Handoff = std::function<void(Fd)>;
    // Listens on `endpoint`; `root` holds index.html and novnc/ (checked: an error names what
    // is missing).
    static Result<std::unique_ptr<WebServer>> create(
        Endpoint endpoint, std::string root, Handoff handoff);

    const Endpoint& endpoint() const { return m_endpoint; }
    void fill(PollSet& set) const;
    void on_poll(const PollSet& set);
    // Whether a request came in part: it is looked at again at every turn (the loop then waits
    // at most TICK), since its bytes stay unread and would make poll return at once.
    bool needs_tick() const;
    static constexpr std::chrono::milliseconds TICK { 20 };
    const WebCounters& counters() const { return m_counters; }

private:
    WebServer(Endpoint endpoint, Fd listener, std::string root, Handoff handoff)
        : m_endpoint(std::move(endpoint))
        , m_listener(std::move(listener))
        , m_root(std::move(root))
        , m_handoff(std::move(handoff))
    {
    }
    struct Connection {
        Fd socket;
        std::chrono::steady_clock::time_point since;
        size_t peeked = 0; // bytes seen by the last peek; no POLLIN until the next turn
        std::string out; // the answer (never empty once there is one), `sent` bytes of it gone
        size_t sent = 0;
        bool answering() const { return !out.empty(); }
    };
    // At most this many connections at a time; more wait in the listen backlog.
    static constexpr size_t MAX_CONNECTIONS = 64;
    // Each returns true when the connection is done with (answered, handed off or dropped).
    bool advance(Connection& c);
    bool respond(Connection& c, std::string response);
    bool flush(Connection& c);
    std::string answer(const HttpRequest& request);
    bool host_allowed(std::string_view host) const;

    Endpoint m_endpoint;
    Fd m_listener;
    std::string m_root;
    Handoff m_handoff;
    std::vector<Connection> m_connections;
    WebCounters m_counters;
};

} // namespace vgpu::vnc
