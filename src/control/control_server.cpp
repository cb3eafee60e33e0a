#include "control/control_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "base/fd_budget.h"
#include "base/log.h"
#include "base/unix_socket.h"
#include "control/json_parse.h"

namespace vgpu::control {

namespace {

json now_timestamp()
{
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    return { { "seconds", us / 1000000 }, { "microseconds", us % 1000000 } };
}

} // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::create(EventLoop& loop,
    const std::string& path, virtio_gpu::Device& device, display::Display& display,
    display::capture::CrcCapture& crc, ControlLimits limits)
{
    auto socket = TRY(listen_unix(path, 16, limits.socket_mode));
    std::unique_ptr<ControlServer> server(new ControlServer(loop, device, display, crc, limits));
    server->m_listen = std::move(socket);
    server->m_path = path;
    server->update_listening();
    if (!server->m_listen_watch)
        return Error::format("control socket {}: cannot watch the listener", path);
    crc.set_entry_listener(
        [raw = server.get()](uint32_t output, const display::capture::CrcEntry& entry) {
            raw->crc_entry(output, entry);
        });
    VGPU_LOG_INFO("control socket on {}", path);
    return server;
}

ControlServer::ControlServer(EventLoop& loop, virtio_gpu::Device& device, display::Display& display,
    display::capture::CrcCapture& crc, ControlLimits limits)
    : m_loop(loop)
    , m_device(device)
    , m_display(display)
    , m_crc(crc)
    , m_limits(limits)
    , m_handlers(handler_table())
{
}

ControlServer::~ControlServer()
{
    m_crc.set_entry_listener({});
    for (auto& [id, client] : m_clients)
        m_loop.unwatch(client.watch);
    if (m_listen_watch)
        m_loop.unwatch(*m_listen_watch);
    if (m_accept_retry)
        m_loop.unwatch(*m_accept_retry);
    ::unlink(m_path.c_str());
}

void ControlServer::update_listening()
{
    bool want = m_clients.size() < m_limits.max_clients && !m_accept_retry;
    if (want && !m_listen_watch) {
        auto watch = m_loop.watch(m_listen.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
        if (watch)
            m_listen_watch = *watch;
        else
            VGPU_LOG_ERROR("control socket: cannot watch the listener: {}", watch.error().message);
    } else if (!want && m_listen_watch) {
        // Connections wait in the kernel's backlog meanwhile; the listener stays readable, so
        // watching it would wake the loop for nothing, over and over.
        m_loop.unwatch(*m_listen_watch);
        m_listen_watch.reset();
        ++m_stats.listen_pauses;
    }
}

void ControlServer::pause_accepting()
{
    // Out of descriptors (or close to the frontend's reserve) or memory: try again later
    // rather than on every loop turn.
    constexpr auto retry = std::chrono::milliseconds(100);
    if (m_accept_retry)
        return;
    auto timer = m_loop.add_timer(retry, std::chrono::nanoseconds(0), [this] {
        m_accept_retry.reset(); // a one-shot timer removes itself
        update_listening();
    });
    if (timer)
        m_accept_retry = *timer;
    update_listening();
}

void ControlServer::on_accept()
{
    while (m_clients.size() < m_limits.max_clients) {
        if (!fds::may_open(1)) {
            VGPU_LOG_GUEST(Warn,
                "control socket: not accepting clients, {} of {} descriptors in use",
                fds::open_count(), fds::limit());
            pause_accepting();
            return;
        }
        int s = ::accept4(m_listen.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (s < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            ++m_stats.accept_errors;
            VGPU_LOG_GUEST(Warn, "control socket: accept: {}", std::strerror(errno));
            pause_accepting();
            return;
        }
        uint64_t id = m_next_client++;
        auto watch = m_loop.watch(
            s, EPOLLIN | EPOLLRDHUP, [this, id](uint32_t events) { on_client(id, events); });
        if (!watch) {
            ::close(s);
            continue;
        }
        auto& client = m_clients[id];
        client.socket = Fd(s);
        client.watch = *watch;
        ++m_stats.clients;
        send(id,
            { { "QMP",
                { { "version",
                      { { "vgpu-display", { { "major", 0 }, { "minor", 1 }, { "micro", 0 } } },
                          { "package", "vgpu-display 0.1.0" } } },
                    { "capabilities", json::array({ "events" }) } } } });
    }
    update_listening();
}

void ControlServer::drop_client(uint64_t id, std::string_view why)
{
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    VGPU_LOG_DEBUG("control client {} dropped: {}", id, why);
    m_loop.unwatch(it->second.watch);
    m_clients.erase(it);
    update_listening();
}

void ControlServer::on_client(uint64_t id, uint32_t events)
{
    if (events & EPOLLOUT)
        flush(id);
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    char buffer[65536];
    // At most 1 MiB per wakeup: a client that writes as fast as we read would otherwise keep the
    // device loop here. The socket stays readable (level-triggered), so we come back to it.
    constexpr int max_reads_per_wakeup = 16;
    for (int reads = 0; reads < max_reads_per_wakeup; ++reads) {
        auto it = m_clients.find(id);
        if (it == m_clients.end())
            return;
        ssize_t n = ::recv(it->second.socket.get(), buffer, sizeof(buffer), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            drop_client(id, "closed");
            return;
        }
        size_t scanned = it->second.in.size(); // the bytes before hold no newline
        it->second.in.append(buffer, size_t(n));
        // Complete lines are requests; an unterminated one may grow up to the message limit.
        for (;;) {
            auto client = m_clients.find(id);
            if (client == m_clients.end())
                return;
            auto& in = client->second.in;
            auto newline = in.find('\n', scanned);
            if (newline == std::string::npos) {
                if (in.size() > m_limits.max_message) {
                    if (!client->second.discarding)
                        bad_message(id,
                            fmt::format("message larger than {} bytes", m_limits.max_message),
                            nullptr);
                    if (auto c = m_clients.find(id); c != m_clients.end()) {
                        c->second.discarding = true;
                        c->second.in.clear();
                    }
                }
                break;
            }
            std::string line = in.substr(0, newline);
            in.erase(0, newline + 1);
            scanned = 0;
            if (client->second.discarding) {
                client->second.discarding = false; // the oversized message ends here
                continue;
            }
            if (line.size() > m_limits.max_message) {
                bad_message(
                    id, fmt::format("message larger than {} bytes", m_limits.max_message), nullptr);
                continue;
            }
            handle_line(id, line);
        }
    }
}

void ControlServer::bad_message(uint64_t id, std::string_view desc, const json& request_id)
{
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    ++m_stats.errors;
    json reply = { { "error", { { "class", "GenericError" }, { "desc", desc } } } };
    if (!request_id.is_null())
        reply["id"] = request_id;
    send(id, reply);
    it = m_clients.find(id);
    if (it != m_clients.end() && ++it->second.bad_in_a_row >= m_limits.max_bad_in_a_row)
        drop_client(id, "too many bad messages in a row");
}

void ControlServer::handle_line(uint64_t id, std::string_view line)
{
    if (line.find_first_not_of(" \t\r") == std::string_view::npos)
        return; // blank lines are ignored
    json request;
    switch (parse_json(line, request)) {
    case JsonParse::Ok:
        break;
    case JsonParse::Malformed:
        bad_message(id, "malformed JSON", nullptr);
        return;
    case JsonParse::TooDeep:
        bad_message(id, fmt::format("JSON nested deeper than {} levels", max_json_depth), nullptr);
        return;
    }
    json request_id = request.is_object() && request.contains("id") ? request["id"] : json();
    if (!request.is_object() || !request.contains("execute") || !request["execute"].is_string()) {
        bad_message(id, "expected an object with \"execute\": NAME", request_id);
        return;
    }
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    it->second.bad_in_a_row = 0;
    ++m_stats.requests;
    auto name = request["execute"].get<std::string>();
    json arguments = request.contains("arguments") ? request["arguments"] : json::object();
    json reply;
    auto handler = m_handlers.find(name);
    if (handler == m_handlers.end()) {
        reply = { { "error",
            { { "class", "CommandNotFound" },
                { "desc", fmt::format("the command {} has not been found", name) } } } };
    } else if (!arguments.is_object()) {
        reply = { { "error",
            { { "class", "InvalidParameter" }, { "desc", "\"arguments\" must be an object" } } } };
    } else {
        CommandResult result = CommandError {};
        try {
            result = (this->*(handler->second))(arguments, it->second);
        } catch (const json::exception& e) {
            // A mistyped argument that slipped past a handler's checks.
            result = CommandError { "InvalidParameter", e.what() };
        }
        if (result)
            reply = { { "return", *result } };
        else
            reply = { { "error",
                { { "class", result.error().error_class }, { "desc", result.error().desc } } } };
    }
    if (reply.contains("error"))
        ++m_stats.errors;
    if (!request_id.is_null())
        reply["id"] = request_id;
    send(id, reply);
}

void ControlServer::send(uint64_t id, const json& message)
{
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    auto& client = it->second;
    // Replies are never dropped, but a client that does not read them at all is.
    std::string text = message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    if (client.out.size() - client.out_sent + text.size() > m_limits.max_queued_replies) {
        ++m_stats.clients_dropped;
        drop_client(id, "not reading its replies");
        return;
    }
    client.out += text;
    flush(id);
}

void ControlServer::flush(uint64_t id)
{
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    auto& client = it->second;
    while (client.out_sent < client.out.size()) {
        ssize_t n = ::send(client.socket.get(), client.out.data() + client.out_sent,
            client.out.size() - client.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            drop_client(id, "send failed");
            return;
        }
        client.out_sent += size_t(n);
    }
    if (client.out_sent == client.out.size()) {
        client.out.clear();
        client.out_sent = 0;
    } else if (client.out_sent > (1 << 20)) {
        client.out.erase(0, client.out_sent);
        client.out_sent = 0;
    }
    bool want = !client.out.empty();
    if (want != client.want_write) {
        client.want_write = want;
        (void)m_loop.modify(client.watch, EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u));
    }
}

void ControlServer::broadcast(const std::string& event, json data)
{
    std::vector<uint64_t> ids;
    for (auto& [id, client] : m_clients)
        if (client.events.contains(event))
            ids.push_back(id);
    if (ids.empty())
        return;
    for (auto id : ids) {
        auto it = m_clients.find(id);
        if (it == m_clients.end())
            continue; // dropped meanwhile
        auto& client = it->second;
        if (client.out.size() - client.out_sent > m_limits.max_queued_events) {
            ++client.dropped;
            ++m_stats.events_dropped;
            continue;
        }
        json message = { { "event", event }, { "data", data }, { "timestamp", now_timestamp() } };
        if (client.dropped) {
            message["dropped"] = client.dropped;
            client.dropped = 0;
        }
        ++m_stats.events_sent;
        send(id, message);
    }
}

// ---- events --------------------------------------------------------------------------------

void ControlServer::output_changed(const display::Output& output)
{
    auto mode = std::make_tuple(output.enabled(), output.width(), output.height());
    if (mode == m_modes[output.index])
        return;
    m_modes[output.index] = mode;
    broadcast("MODE_CHANGE",
        { { "output", output.index }, { "width", output.width() }, { "height", output.height() },
            { "enabled", output.enabled() } });
}

void ControlServer::output_damaged(const display::Output& output, display::Rect)
{
    broadcast("FLIP",
        { { "output", output.index }, { "frame", output.generation },
            { "resource", output.source ? output.source->resource.value() : 0 } });
}

void ControlServer::crc_entry(uint32_t output, const display::capture::CrcEntry& entry)
{
    broadcast("CRC",
        { { "output", output }, { "frame", entry.frame }, { "crc", entry.crc },
            { "line", fmt::format("0x{:08x} 0x{:08x}", uint32_t(entry.frame), entry.crc) } });
}

const std::map<std::string, ControlServer::Handler, std::less<>>& ControlServer::handler_table()
{
    static const std::map<std::string, ControlServer::Handler, std::less<>> table {
        { "qmp_capabilities", &ControlServer::cmd_qmp_capabilities },
        { "query-version", &ControlServer::cmd_query_version },
        { "query-capabilities", &ControlServer::cmd_query_capabilities },
        { "query-outputs", &ControlServer::cmd_query_outputs },
        { "query-resources", &ControlServer::cmd_query_resources },
        { "query-stats", &ControlServer::cmd_query_stats },
        { "screendump", &ControlServer::cmd_screendump },
        { "crc-start", &ControlServer::cmd_crc_start },
        { "crc-read", &ControlServer::cmd_crc_read },
        { "crc-stop", &ControlServer::cmd_crc_stop },
        { "subscribe", &ControlServer::cmd_subscribe },
        { "output-add", &ControlServer::cmd_output_add },
        { "output-remove", &ControlServer::cmd_output_remove },
        { "output-resize", &ControlServer::cmd_output_resize },
    };
    return table;
}

} // namespace vgpu::control
