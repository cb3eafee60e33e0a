#include "vnc/qmp_input.h"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/unix_socket.h"
#include "vnc/keymap.h"

namespace vgpu::vnc {

using json = nlohmann::json;

namespace {

// What waits for QEMU at most: a second of typing and pointer motion many times over.
constexpr size_t MAX_QUEUED = 1 << 20;
// QMP replies are small; a line longer than this is not QEMU.
constexpr size_t MAX_LINE = 1 << 20;

// RFB pointer mask bits, in order, as QEMU's InputButton names them.
constexpr std::array<const char*, 7> BUTTONS = { "left", "middle", "right", "wheel-up",
    "wheel-down", "wheel-left", "wheel-right" };

json key_event(std::string_view qcode, bool down)
{
    return { { "type", "key" },
        { "data",
            { { "down", down },
                { "key", { { "type", "qcode" }, { "data", std::string(qcode) } } } } } };
}

} // namespace

uint32_t abs_axis_value(int position, uint32_t size)
{
    if (size <= 1 || position <= 0)
        return 0;
    if (uint32_t(position) >= size - 1)
        return ABS_MAX;
    // Rounded to the nearest step.
    return uint32_t((uint64_t(position) * ABS_MAX + (size - 1) / 2) / (size - 1));
}

Result<void> QmpInput::connect()
{
    m_last_attempt = std::chrono::steady_clock::now();
    auto socket = connect_unix(m_path);
    if (!socket) {
        m_last_error = socket.error().message;
        return socket.error();
    }
    TRY(set_nonblocking(socket->get()));
    m_socket = socket.release_value();
    m_ready = false;
    m_in.clear();
    m_out.clear();
    ++m_counters.connects;
    log::message(log::Level::Info, "qmp: connected to {}", m_path);
    return {};
}

void QmpInput::disconnect(std::string_view why)
{
    if (m_socket)
        log::message(log::Level::Warn, "qmp: {}: {}", m_path, why);
    m_last_error = std::string(why);
    m_socket.reset();
    m_ready = false;
    m_in.clear();
    m_out.clear();
    if (!m_pending.empty()) {
        ++m_counters.dropped;
        m_pending.clear();
    }
}

void QmpInput::on_readable()
{
    std::array<char, 4096> buffer {};
    for (;;) {
        ssize_t n = ::read(m_socket.get(), buffer.data(), buffer.size());
        if (n == 0)
            return disconnect("QEMU closed the QMP connection");
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return disconnect(std::strerror(errno));
        }
        m_in.append(buffer.data(), size_t(n));
        if (m_in.size() > MAX_LINE && m_in.find('\n') == std::string::npos)
            return disconnect("a QMP line longer than 1 MiB");
    }
    size_t start = 0;
    for (size_t end = 0; (end = m_in.find('\n', start)) != std::string::npos; start = end + 1) {
        auto message = json::parse(
            m_in.begin() + ptrdiff_t(start), m_in.begin() + ptrdiff_t(end), nullptr, false);
        if (message.is_discarded() || !message.is_object())
            return disconnect("QEMU sent a line that is not a JSON object");
        handle(message);
        if (!m_socket)
            return;
    }
    m_in.erase(0, start);
}

void QmpInput::handle(const json& message)
{
    if (message.contains("QMP")) {
        // The greeting: negotiate, then the events that waited.
        m_out += R"({"execute":"qmp_capabilities","id":"capabilities"})"
                 "\n";
        return on_writable();
    }
    if (message.contains("event"))
        return;
    if (message.contains("error")) {
        ++m_counters.errors;
        m_last_error = message["error"].value("desc", std::string("(no description)"));
        log::message(log::Level::Warn, "qmp: input-send-event failed: {}", m_last_error);
        return;
    }
    if (message.contains("return")) {
        if (message.value("id", std::string()) == "capabilities") {
            m_ready = true;
            m_out += m_pending;
            m_pending.clear();
            return on_writable();
        }
        ++m_counters.replies;
    }
}

void QmpInput::on_writable()
{
    while (!m_out.empty()) {
        ssize_t n = ::send(m_socket.get(), m_out.data(), m_out.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            return disconnect(std::strerror(errno));
        }
        m_out.erase(0, size_t(n));
    }
}

void QmpInput::send(json events)
{
    if (!m_socket) {
        // Retry a lost or refused connection at most once a second.
        if (std::chrono::steady_clock::now() - m_last_attempt < std::chrono::seconds(1)
            || !connect()) {
            ++m_counters.dropped;
            return;
        }
    }
    json command = { { "execute", "input-send-event" }, { "arguments", { { "events", events } } } };
    std::string line = command.dump() + "\n";
    std::string& queue = m_ready ? m_out : m_pending;
    if (queue.size() + line.size() > MAX_QUEUED) {
        ++m_counters.dropped;
        return;
    }
    queue += line;
    ++m_counters.commands;
    // Most lines go at once; what the socket does not take waits for POLLOUT.
    if (m_ready)
        on_writable();
}

void QmpInput::key(uint32_t keysym, bool down)
{
    std::string_view qcode = qcode_for_keysym(keysym);
    if (qcode.empty()) {
        ++m_counters.unmapped_keys;
        log::message(log::Level::Debug, "qmp: keysym {:#x} has no key on a US layout", keysym);
        return;
    }
    if (down)
        m_held.emplace(qcode);
    else if (auto it = m_held.find(qcode); it != m_held.end())
        m_held.erase(it);
    send(json::array({ key_event(qcode, down) }));
}

void QmpInput::release_all_keys()
{
    if (m_held.empty())
        return;
    json events = json::array();
    for (const auto& qcode : m_held)
        events.push_back(key_event(qcode, false));
    m_held.clear();
    send(std::move(events));
}

void QmpInput::pointer(int x, int y, uint32_t button_mask, uint32_t width, uint32_t height)
{
    if (!width || !height)
        return;
    json events = json::array();
    events.push_back({ { "type", "abs" },
        { "data", { { "axis", "x" }, { "value", abs_axis_value(x, width) } } } });
    events.push_back({ { "type", "abs" },
        { "data", { { "axis", "y" }, { "value", abs_axis_value(y, height) } } } });
    uint32_t changed = (button_mask ^ m_buttons) & ((1u << BUTTONS.size()) - 1);
    for (size_t i = 0; i < BUTTONS.size(); ++i)
        if (changed & (1u << i))
            events.push_back({ { "type", "btn" },
                { "data",
                    { { "down", (button_mask & (1u << i)) != 0 }, { "button", BUTTONS[i] } } } });
    m_buttons = button_mask;
    send(std::move(events));
}

} // namespace vgpu::vnc
