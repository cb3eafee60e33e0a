// The backend's end of QEMU's display socket. QEMU reads each message whole and blocking in its
// main loop, while it may also wait for our vhost-user replies: a write here must never block
// the device loop, so messages go into a send queue drained when the socket is writable.
// Requests that have a reply keep a FIFO of continuations; QEMU answers in order.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/result.h"
#include "display/qemu/wire.h"

namespace vgpu::display::qemu {

class DisplayChannel {
public:
    using ReplyHandler = std::function<void(std::span<const std::byte> payload)>;

    static Result<std::unique_ptr<DisplayChannel>> create(EventLoop& loop, Fd socket);
    ~DisplayChannel();

    // Queues a message; `on_reply` (if any) runs with the reply's payload.
    void send(GpuRequest request, std::span<const std::byte> payload, ReplyHandler on_reply = {});
    // Called once when the peer goes away or breaks the protocol.
    void set_closed_callback(std::function<void()> callback) { m_on_closed = std::move(callback); }

    bool open() const { return m_socket.valid(); }
    size_t queued_bytes() const { return m_queued_bytes; }
    uint64_t messages_sent() const { return m_messages_sent; }

private:
    DisplayChannel(EventLoop& loop, Fd socket)
        : m_loop(loop)
        , m_socket(std::move(socket))
    {
    }
    void on_ready(uint32_t events);
    void flush();
    void read_replies();
    void close(std::string_view why);
    void update_interest();

    EventLoop& m_loop;
    Fd m_socket;
    EventLoop::WatchId m_watch = 0;
    bool m_want_write = false;
    std::deque<std::vector<std::byte>> m_queue;
    size_t m_front_sent = 0; // bytes of m_queue.front() already written
    size_t m_queued_bytes = 0;
    std::deque<ReplyHandler> m_pending_replies;
    std::vector<std::byte> m_in;
    uint64_t m_messages_sent = 0;
    std::function<void()> m_on_closed;
};

} // namespace vgpu::display::qemu
