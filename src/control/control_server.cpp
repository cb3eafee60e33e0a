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
    server->m_offload = std::make_unique<Offload>(loop, limits.max_offloaded);
    server->m_crc_listener = crc.add_entry_listener(
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
    m_crc.remove_entry_listener(m_crc_listener);
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
        client.id = id;
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

ControlServer::Client* ControlServer::find(uint64_t id)
{
    auto it = m_clients.find(id);
    return it == m_clients.end() ? nullptr : &it->second;
}

void ControlServer::on_client(uint64_t id, uint32_t events)
{
    if (events & (EPOLLHUP | EPOLLERR)) {
        drop_client(id, "hung up"); // nothing can reach it any more
        return;
    }
    if (events & EPOLLOUT)
        flush(id);
    if (!find(id))
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        read_input(id);
    process_input(id);
}

void ControlServer::read_input(uint64_t id)
{
    // Reading stops once a whole request is waiting: requests are taken a few per loop turn,
    // and meanwhile the client's socket fills and its writes block, not our memory or our time.
    char buffer[65536];
    constexpr int max_reads_per_wakeup = 16;
    for (int reads = 0; reads < max_reads_per_wakeup; ++reads) {
        auto* client = find(id);
        if (!client || client->in.find('\n', client->scanned) != std::string::npos)
            return;
        client->scanned = client->in.size();
        ssize_t n = ::recv(client->socket.get(), buffer, sizeof(buffer), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            drop_client(id, "closed");
            return;
        }
        client->in.append(buffer, size_t(n));
        // An unterminated message may grow up to the limit; past it, it is refused once and
        // discarded up to its newline.
        if (client->in.find('\n', client->scanned) == std::string::npos
            && client->in.size() > m_limits.max_message) {
            bool first = !client->discarding;
            client->discarding = true;
            client->in.clear();
            client->scanned = 0;
            if (first)
                bad_message(
                    id, fmt::format("message larger than {} bytes", m_limits.max_message), nullptr);
        }
    }
}

std::optional<std::string> ControlServer::next_line(Client& client)
{
    for (;;) {
        auto newline = client.in.find('\n', client.scanned);
        if (newline == std::string::npos) {
            client.scanned = client.in.size();
            return std::nullopt;
        }
        std::string line = client.in.substr(0, newline);
        client.in.erase(0, newline + 1);
        client.scanned = 0;
        if (client.discarding) {
            client.discarding = false; // the oversized message ends here
            continue;
        }
        return line;
    }
}

void ControlServer::process_input(uint64_t id)
{
    // A few requests per loop turn: a client that pipelines thousands gets them answered in
    // turns, between which the device loop serves the guest and the other clients.
    for (unsigned handled = 0;; ++handled) {
        auto* client = find(id);
        if (!client)
            return;
        if (client->busy)
            break; // an answer is being prepared off the loop; requests wait, in order
        if (handled == m_limits.max_requests_per_turn) {
            if (client->in.find('\n', client->scanned) != std::string::npos
                && !client->continuation_posted) {
                client->continuation_posted = true;
                m_loop.post(m_lifetime.guard([this, id] {
                    if (auto* c = find(id)) {
                        c->continuation_posted = false;
                        process_input(id);
                    }
                }));
            }
            break;
        }
        auto line = next_line(*client);
        if (!line)
            break;
        if (line->size() > m_limits.max_message) {
            bad_message(
                id, fmt::format("message larger than {} bytes", m_limits.max_message), nullptr);
            continue;
        }
        handle_line(id, *line);
    }
    update_interest(id);
}

void ControlServer::update_interest(uint64_t id)
{
    auto* client = find(id);
    if (!client)
        return;
    // Input is read only when nothing is waiting to be handled; output while any is queued.
    bool want_read = !client->busy && !client->continuation_posted
        && client->in.find('\n', client->scanned) == std::string::npos;
    bool want_write = client->out_sent < client->out.size();
    uint32_t events = (want_read ? EPOLLIN | EPOLLRDHUP : 0u) | (want_write ? EPOLLOUT : 0u);
    if (events == client->interest)
        return;
    client->interest = events;
    (void)m_loop.modify(client->watch, events);
}

void ControlServer::finish_later(uint64_t id, std::string_view reply_line, bool error)
{
    auto* client = find(id);
    if (!client)
        return; // gone while its answer was prepared
    client->busy = false;
    if (error)
        ++m_stats.errors;
    send_text(id, reply_line);
    process_input(id);
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
        it->second.request_id = request_id;
        try {
            result = (this->*(handler->second))(arguments, it->second);
        } catch (const json::exception& e) {
            // A mistyped argument that slipped past a handler's checks.
            result = CommandError { "InvalidParameter", e.what() };
        }
        if (result && std::holds_alternative<Later>(*result))
            return; // the handler answers when its work off the loop is done (finish_later)
        if (result)
            reply = { { "return", std::get<json>(std::move(*result)) } };
        else
            reply = error_reply(result.error());
    }
    if (reply.contains("error"))
        ++m_stats.errors;
    if (!request_id.is_null())
        reply["id"] = request_id;
    send(id, reply);
}

json ControlServer::error_reply(const CommandError& error)
{
    return { { "error", { { "class", error.error_class }, { "desc", error.desc } } } };
}

std::string ControlServer::reply_line(const json& message)
{
    return message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

void ControlServer::send(uint64_t id, const json& message)
{
    if (find(id))
        send_text(id, reply_line(message));
}

void ControlServer::send_text(uint64_t id, std::string_view text)
{
    auto it = m_clients.find(id);
    if (it == m_clients.end())
        return;
    auto& client = it->second;
    // Replies are never dropped, but a client that does not read them at all is.
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
    update_interest(id);
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
        { "lease-list", &ControlServer::cmd_lease_list },
        { "lease-revoke", &ControlServer::cmd_lease_revoke },
    };
    return table;
}

} // namespace vgpu::control
