#include "vnc/web_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace vgpu::vnc {

namespace {

constexpr size_t MAX_REQUEST_HEAD = size_t(16) * 1024;
constexpr size_t MAX_FILE = size_t(8) * 1024 * 1024;
constexpr auto REQUEST_TIMEOUT = std::chrono::seconds(10);

bool equal_nocase(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x))
            == std::tolower(static_cast<unsigned char>(y));
    });
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

std::string_view reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Internal Server Error";
    }
}

// What the client sent and we did not read, read now: a socket closed with unread bytes resets
// the connection, and the client might lose our answer.
void discard_input(int fd)
{
    char sink[4096];
    while (::recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) { }
}

std::string status_response(int status, std::string_view text)
{
    std::string body = fmt::format("{} {}\n{}\n", status, reason(status), text);
    return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        status, reason(status), body.size(), body);
}

} // namespace

Result<std::optional<HttpRequest>> parse_http_request(std::string_view bytes)
{
    size_t end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        if (bytes.size() >= MAX_REQUEST_HEAD)
            return Error::format("a request head over {} bytes", MAX_REQUEST_HEAD);
        return std::optional<HttpRequest>();
    }
    HttpRequest request;
    request.header_bytes = end + 4;
    std::string_view head = bytes.substr(0, end + 2);
    size_t eol = head.find("\r\n");
    std::string_view start = head.substr(0, eol);
    size_t sp1 = start.find(' '), sp2 = start.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1
        || !start.substr(sp2 + 1).starts_with("HTTP/1."))
        return Error::format("not an HTTP/1.x request line");
    request.method = std::string(start.substr(0, sp1));
    request.target = std::string(start.substr(sp1 + 1, sp2 - sp1 - 1));
    for (size_t at = eol + 2; at < head.size();) {
        size_t next = head.find("\r\n", at);
        std::string_view line = head.substr(at, next - at);
        at = next + 2;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0)
            return Error::format("a header line without a name");
        std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
        if (equal_nocase(name, "Host"))
            request.host = std::string(value);
        else if (equal_nocase(name, "Origin"))
            request.origin = std::string(value);
        else if (equal_nocase(name, "Upgrade"))
            request.upgrade = std::string(value);
    }
    return std::optional(std::move(request));
}

HttpPath resolve_target(const std::string& root, std::string_view target)
{
    if (target.empty() || target.front() != '/')
        return { {}, 400 };
    target = target.substr(0, target.find_first_of("?#"));
    std::string decoded;
    for (size_t i = 0; i < target.size(); ++i) {
        if (target[i] != '%') {
            decoded += target[i];
            continue;
        }
        int high = i + 2 < target.size() ? hex_digit(target[i + 1]) : -1;
        int low = i + 2 < target.size() ? hex_digit(target[i + 2]) : -1;
        if (high < 0 || low < 0)
            return { {}, 400 };
        decoded += char(high * 16 + low);
        i += 2;
    }
    if (decoded.find('\0') != std::string::npos)
        return { {}, 400 };
    std::string path = root;
    for (size_t at = 1; at <= decoded.size();) {
        size_t slash = std::min(decoded.find('/', at), decoded.size());
        std::string_view segment = std::string_view(decoded).substr(at, slash - at);
        at = slash + 1;
        if (segment.empty())
            continue;
        // No parent directories, and no hidden files (".git", editor leftovers).
        if (segment.front() == '.')
            return { {}, 403 };
        path += '/';
        path += segment;
    }
    struct stat st { };
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        path += "/index.html";
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return { {}, 404 };
    return { path, 200 };
}

std::string_view content_type(std::string_view path)
{
    struct Type {
        std::string_view suffix, type;
    };
    static constexpr Type TYPES[] = { { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
        { ".json", "application/json" }, { ".svg", "image/svg+xml" }, { ".png", "image/png" },
        { ".wasm", "application/wasm" } };
    for (const auto& t : TYPES)
        if (path.ends_with(t.suffix))
            return t.type;
    return "application/octet-stream";
}

Result<std::unique_ptr<WebServer>> WebServer::create(
    Endpoint endpoint, std::string root, Handoff handoff)
{
    for (const char* needed : { "/index.html", "/novnc/core/rfb.js" }) {
        struct stat st { };
        if (::stat((root + needed).c_str(), &st) != 0)
            return Error::format("the browser view's files are not in {}: no {} ({})", root,
                needed + 1,
                std::string_view(needed).starts_with("/novnc")
                    ? "noVNC comes from npm: ./run deps installs it into web/node_modules"
                    : "--web names the directory");
    }
    Fd listener = TRY(listen_tcp(endpoint));
    return std::unique_ptr<WebServer>(new WebServer(
        std::move(endpoint), std::move(listener), std::move(root), std::move(handoff)));
}

bool WebServer::needs_tick() const
{
    return std::any_of(m_connections.begin(), m_connections.end(),
        [](const Connection& c) { return c.peeked > 0; });
}

void WebServer::fill(PollSet& set) const
{
    if (m_connections.size() < MAX_CONNECTIONS)
        set.add(m_listener.get(), POLLIN);
    for (const auto& c : m_connections) {
        if (c.answering())
            set.add(c.socket.get(), POLLOUT);
        else if (c.peeked == 0)
            set.add(c.socket.get(), POLLIN);
    }
}

void WebServer::on_poll(const PollSet& set)
{
    auto now = std::chrono::steady_clock::now();
    std::erase_if(m_connections, [&](Connection& c) {
        // A client that neither finishes its request nor reads our answer in time is let go.
        if (now - c.since > REQUEST_TIMEOUT)
            return true;
        short events = set.revents(c.socket.get());
        if (c.answering())
            return (events & (POLLOUT | POLLHUP | POLLERR)) ? flush(c) : false;
        if (c.peeked == 0 && !(events & (POLLIN | POLLHUP | POLLERR)))
            return false;
        return advance(c);
    });
    if (set.revents(m_listener.get()) & POLLIN) {
        while (m_connections.size() < MAX_CONNECTIONS) {
            int fd = ::accept4(m_listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            Connection c;
            c.socket = Fd(fd);
            c.since = now;
            m_connections.push_back(std::move(c));
        }
    }
}

bool WebServer::host_allowed(std::string_view host) const
{
    std::string port = fmt::format(":{}", m_endpoint.port());
    for (std::string_view name : { "127.0.0.1", "localhost", "[::1]" })
        if (host == std::string(name) + port)
            return true;
    return host == m_endpoint.host_port();
}

bool WebServer::advance(Connection& c)
{
    // Peeked, not read: a WebSocket upgrade goes to libvncserver with its bytes still unread.
    std::string bytes(MAX_REQUEST_HEAD, '\0');
    ssize_t n = ::recv(c.socket.get(), bytes.data(), bytes.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n <= 0)
        return true;
    bytes.resize(size_t(n));
    auto request = parse_http_request(bytes);
    if (!request || !*request) {
        if (request && size_t(n) < MAX_REQUEST_HEAD) {
            c.peeked = size_t(n);
            return false;
        }
        ++m_counters.refused;
        return respond(
            c, status_response(request ? 431 : 400, request ? "" : request.error().message));
    }
    if (equal_nocase((*request)->upgrade, "websocket")) {
        const auto& r = **request;
        if (r.method != "GET" || !host_allowed(r.host)
            || (!r.origin.empty() && r.origin != "http://" + r.host)) {
            ++m_counters.refused;
            log::message(log::Level::Warn,
                "web: WebSocket refused (Host '{}', Origin '{}'): only this server's own page may "
                "connect",
                r.host, r.origin);
            return respond(c, status_response(403, "WebSocket only from this server's own page"));
        }
        ++m_counters.upgrades;
        m_handoff(std::move(c.socket));
        return true;
    }
    // The head is in the socket: take it off, then answer.
    std::string head((*request)->header_bytes, '\0');
    if (::recv(c.socket.get(), head.data(), head.size(), MSG_DONTWAIT) != ssize_t(head.size()))
        return true;
    return respond(c, answer(**request));
}

bool WebServer::respond(Connection& c, std::string response)
{
    discard_input(c.socket.get());
    c.out = std::move(response);
    return flush(c);
}

bool WebServer::flush(Connection& c)
{
    // Non-blocking: what the socket does not take now goes at the next POLLOUT.
    while (c.sent < c.out.size()) {
        ssize_t n = ::send(c.socket.get(), c.out.data() + c.sent, c.out.size() - c.sent,
            MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return false;
        if (n <= 0)
            return true;
        c.sent += size_t(n);
    }
    // All sent: what the client sent meanwhile is read before the close (no reset).
    discard_input(c.socket.get());
    ::shutdown(c.socket.get(), SHUT_WR);
    return true;
}

std::string WebServer::answer(const HttpRequest& request)
{
    if (!host_allowed(request.host)) {
        ++m_counters.refused;
        return status_response(403, "unknown Host (this server answers for its own address only)");
    }
    if (request.method != "GET" && request.method != "HEAD") {
        ++m_counters.refused;
        return status_response(405, "GET or HEAD only");
    }
    auto resolved = resolve_target(m_root, request.target);
    if (resolved.status != 200) {
        ++m_counters.refused;
        return status_response(resolved.status, request.target);
    }
    auto body = read_whole_file(resolved.path, MAX_FILE);
    if (!body) {
        ++m_counters.refused;
        return status_response(500, body.error().message);
    }
    ++m_counters.requests;
    std::string response = fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
        "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n",
        content_type(resolved.path), body->size());
    if (request.method == "GET")
        response.append(reinterpret_cast<const char*>(body->data()), body->size());
    return response;
}

} // namespace vgpu::vnc
