#include "harness/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

namespace vgpu::harness {

ControlClient ControlClient::connect(const std::string& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
            ControlClient client(std::move(s));
            auto greeting = client.read_message();
            if (!greeting)
                throw std::runtime_error("no greeting on the control socket");
            client.m_greeting = *greeting;
            return client;
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("cannot connect to the control socket " + path);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

void ControlClient::send_raw(std::string_view bytes)
{
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::send(m_socket.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n <= 0)
            return; // the server closed: a test outcome
        done += size_t(n);
    }
}

std::optional<std::string> ControlClient::read_line(std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto newline = m_in.find('\n');
        if (newline != std::string::npos) {
            std::string line = m_in.substr(0, newline);
            m_in.erase(0, newline + 1);
            return line;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p { m_socket.get(), POLLIN, 0 };
        if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0)
            return std::nullopt;
        char buffer[65536];
        ssize_t n = ::recv(m_socket.get(), buffer, sizeof(buffer), 0);
        if (n <= 0)
            return std::nullopt;
        m_in.append(buffer, size_t(n));
    }
}

std::optional<nlohmann::json> ControlClient::read_message(std::chrono::milliseconds timeout)
{
    auto line = read_line(timeout);
    if (!line)
        return std::nullopt;
    auto message = json::parse(*line, nullptr, false);
    if (message.is_discarded())
        throw std::runtime_error("the server sent malformed JSON: " + *line);
    return message;
}

std::optional<nlohmann::json> ControlClient::execute(
    const std::string& name, const json& arguments, std::chrono::milliseconds timeout)
{
    uint64_t id = m_next_id++;
    json request = { { "execute", name }, { "arguments", arguments }, { "id", id } };
    send_raw(request.dump() + "\n");
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return std::nullopt;
        auto message = read_message(left);
        if (!message)
            return std::nullopt;
        if (message->contains("event")) {
            m_events.push_back(*message);
            continue;
        }
        if (message->contains("id") && (*message)["id"] == id)
            return message;
    }
}

nlohmann::json ControlClient::call(const std::string& name, const json& arguments)
{
    auto reply = execute(name, arguments);
    if (!reply)
        throw std::runtime_error("no reply to " + name);
    if (!reply->contains("return"))
        throw std::runtime_error(name + " failed: " + reply->dump());
    return (*reply)["return"];
}

std::optional<nlohmann::json> ControlClient::next_event(std::chrono::milliseconds timeout)
{
    if (!m_events.empty()) {
        auto event = m_events.front();
        m_events.pop_front();
        return event;
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return std::nullopt;
        auto message = read_message(left);
        if (!message)
            return std::nullopt;
        if (message->contains("event"))
            return message;
    }
}

bool ControlClient::closed_by_server(std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p { m_socket.get(), POLLIN, 0 };
        if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0)
            return false;
        char buffer[65536];
        ssize_t n = ::recv(m_socket.get(), buffer, sizeof(buffer), 0);
        if (n <= 0)
            return true;
    }
}

} // namespace vgpu::harness
