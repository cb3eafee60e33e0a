#include "app/tools/ctl_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unix_socket.h"
#include "control/json_parse.h"

namespace vgpu::ctl {

namespace {

// Our largest reply is an inline screendump: a 4095x4095 PPM is 67 MB in base64.
constexpr size_t MAX_LINE = size_t(256) << 20;

std::string one_line(std::string text)
{
    for (auto& c : text)
        if (c == '\n' || c == '\r')
            c = ' ';
    return text;
}

} // namespace

std::string dump(const json& value, int indent)
{
    return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string describe_error(const json& error)
{
    std::string error_class = "error";
    std::string desc;
    if (error.is_object()) {
        if (auto it = error.find("class"); it != error.end() && it->is_string())
            error_class = it->get<std::string>();
        if (auto it = error.find("desc"); it != error.end() && it->is_string())
            desc = it->get<std::string>();
        else
            desc = dump(error);
    } else {
        desc = dump(error);
    }
    return one_line(error_class + ": " + desc);
}

CtlResult<std::unique_ptr<Connection>> Connection::open(
    const std::string& path, std::chrono::milliseconds timeout)
{
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
        return failure(Exit::Usage, "--control {}: a unix socket path must be 1 to {} bytes", path,
            sizeof(sockaddr_un::sun_path) - 1);
    auto connected = connect_unix(path);
    if (!connected)
        return failure(Exit::Connection, "cannot connect to {}: {}", path,
            std::strerror(connected.error().errno_value));
    Fd socket = connected.release_value();

    std::unique_ptr<Connection> connection(new Connection(std::move(socket), path, timeout));
    auto greeting = TRY(connection->read_message(std::chrono::steady_clock::now() + timeout, -1));
    if (!greeting || !greeting->contains("QMP"))
        return failure(Exit::Connection,
            "protocol error: {} did not greet with a QMP object (is it a vgpu-display control "
            "socket?)",
            path);
    connection->m_greeting = std::move(*greeting);
    return connection;
}

CtlResult<void> Connection::send_line(const std::string& line)
{
    std::string_view rest = line;
    while (!rest.empty()) {
        // MSG_NOSIGNAL: a server that went away is exit code 3, not death by SIGPIPE.
        ssize_t n = ::send(m_socket.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return failure(
                Exit::Connection, "connection to {} lost: {}", m_path, std::strerror(errno));
        rest.remove_prefix(size_t(n));
    }
    return {};
}

CtlResult<std::optional<std::string>> Connection::read_line(Deadline deadline, int interrupt_fd)
{
    for (;;) {
        auto newline = m_in.find('\n', m_scanned);
        if (newline != std::string::npos) {
            std::string line = m_in.substr(0, newline);
            m_in.erase(0, newline + 1);
            m_scanned = 0;
            return std::optional<std::string>(std::move(line));
        }
        m_scanned = m_in.size();
        if (m_in.size() > MAX_LINE)
            return failure(Exit::Connection, "protocol error: a message from {} is over {} bytes",
                m_path, MAX_LINE);

        int wait_ms = -1;
        if (deadline) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(
                *deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return failure(
                    Exit::Connection, "no reply from {} within {} ms", m_path, m_timeout.count());
            wait_ms = int(std::min<int64_t>(left.count(), 1 << 30));
        }
        pollfd fds[2] = { { m_socket.get(), POLLIN, 0 }, { interrupt_fd, POLLIN, 0 } };
        int ready = ::poll(fds, interrupt_fd >= 0 ? 2 : 1, wait_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return failure(Exit::Connection, "poll: {}", std::strerror(errno));
        if (interrupt_fd >= 0 && (fds[1].revents & POLLIN))
            return std::optional<std::string>();
        if (ready == 0 || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char buffer[65536];
        ssize_t n = ::recv(m_socket.get(), buffer, sizeof(buffer), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return failure(
                Exit::Connection, "connection to {} lost: {}", m_path, std::strerror(errno));
        if (n == 0)
            return failure(Exit::Connection, "connection closed by {}", m_path);
        m_in.append(buffer, size_t(n));
    }
}

CtlResult<std::optional<json>> Connection::read_message(Deadline deadline, int interrupt_fd)
{
    auto line = TRY(read_line(deadline, interrupt_fd));
    if (!line)
        return std::optional<json>();
    json message;
    switch (control::parse_json(*line, message)) {
    case control::JsonParse::Ok:
        break;
    case control::JsonParse::Malformed:
        return failure(Exit::Connection, "protocol error: {} sent a line that is not JSON", m_path);
    case control::JsonParse::TooDeep:
        return failure(Exit::Connection,
            "protocol error: {} sent JSON nested deeper than {} levels", m_path,
            control::max_json_depth);
    }
    if (!message.is_object())
        return failure(
            Exit::Connection, "protocol error: {} sent JSON that is not an object", m_path);
    return std::optional<json>(std::move(message));
}

CtlResult<json> Connection::exchange(json request)
{
    if (!request.contains("id"))
        request["id"] = m_next_id++;
    json id = request["id"];
    TRY(send_line(dump(request) + "\n"));
    auto deadline = std::chrono::steady_clock::now() + m_timeout;
    for (;;) {
        auto message = TRY(read_message(deadline, -1));
        if (!message)
            continue;
        if (message->contains("event")) {
            m_events.push_back(std::move(*message));
            continue;
        }
        bool is_reply = message->contains("return") || message->contains("error");
        auto echoed = message->find("id");
        // A reply to someone else's id (or none) is not ours: skip it and keep waiting.
        if (is_reply && echoed != message->end() && *echoed == id)
            return std::move(*message);
    }
}

CtlResult<json> Connection::execute(std::string_view name, json arguments)
{
    json request = { { "execute", name } };
    if (!arguments.empty())
        request["arguments"] = std::move(arguments);
    auto reply = TRY(exchange(std::move(request)));
    if (auto error = reply.find("error"); error != reply.end())
        return Failure { Exit::Failed, describe_error(*error) };
    return std::move(reply["return"]);
}

CtlResult<std::optional<json>> Connection::next_event(int interrupt_fd)
{
    for (;;) {
        if (!m_events.empty()) {
            json event = std::move(m_events.front());
            m_events.pop_front();
            return std::optional<json>(std::move(event));
        }
        auto message = TRY(read_message(std::nullopt, interrupt_fd));
        if (!message)
            return std::optional<json>();
        if (message->contains("event"))
            return message;
        // Anything else (a stray reply) is not an event: keep waiting.
    }
}

} // namespace vgpu::ctl
