// The backend's end of QEMU's display socket. QEMU reads each message whole and blocking in its
// main loop, while it may also wait for our vhost-user replies: a write here must never block
// the device loop, so messages go into a send queue drained when the socket is writable.
// Messages may produce their bytes as they go (an UPDATE reads rows straight from the resource),
// so a large frame needs no staging copy. Requests that have a reply keep a FIFO of
// continuations; QEMU answers in order.
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

// A message that hands out its bytes in pieces.
class OutgoingMessage {
public:
    virtual ~OutgoingMessage() = default;
    // The next bytes to send; empty when the message is complete.
    virtual std::span<const std::byte> next() = 0;
    // `n` bytes of what next() returned were sent.
    virtual void advance(size_t n) = 0;
    // Bytes the message holds in memory (an UPDATE reads the resource as it goes: none).
    virtual size_t buffered_bytes() const { return 0; }
    // A descriptor to pass (SCM_RIGHTS) with the message's first bytes, -1 for none; fd_sent()
    // once it went.
    virtual int fd() const { return -1; }
    virtual void fd_sent() { }
};

class DisplayChannel {
public:
    using ReplyHandler = std::function<void(std::span<const std::byte> payload)>;
    // Asked for as SO_SNDBUF (Linux doubles it for its own bookkeeping): a 1920x1080 UPDATE.
    static constexpr size_t sizeof_send_buffer = 8u << 20;
    // Buffered messages (everything but UPDATEs) waiting to be sent.
    static constexpr size_t max_queued_bytes = 1u << 20;

    static Result<std::unique_ptr<DisplayChannel>> create(EventLoop& loop, Fd socket);
    ~DisplayChannel();

    // Queues a message; `on_reply` (if any) runs with the reply's payload. `fd` goes with it.
    void send(GpuRequest request, std::span<const std::byte> payload, ReplyHandler on_reply = {},
        Fd fd = {});
    void send_message(std::unique_ptr<OutgoingMessage> message);
    // Called once when the peer goes away or breaks the protocol.
    void set_closed_callback(std::function<void()> callback) { m_on_closed = std::move(callback); }
    // Called whenever the send queue becomes empty.
    void set_drained_callback(std::function<void()> callback)
    {
        m_on_drained = std::move(callback);
    }

    bool open() const { return m_socket.valid(); }
    bool busy() const { return !m_queue.empty(); }
    uint64_t messages_sent() const { return m_messages_sent; }
    uint64_t bytes_sent() const { return m_bytes_sent; }

private:
    DisplayChannel(EventLoop& loop, Fd socket)
        : m_loop(loop)
        , m_socket(std::move(socket))
    {
    }
    void on_ready(uint32_t events);
    void flush();
    void read_replies();
    void parse_replies();
    void close(std::string_view why);
    void update_interest();

    EventLoop& m_loop;
    Fd m_socket;
    EventLoop::WatchId m_watch = 0;
    bool m_want_write = false;
    std::deque<std::unique_ptr<OutgoingMessage>> m_queue;
    size_t m_queued_bytes = 0;
    std::deque<ReplyHandler> m_pending_replies;
    std::vector<std::byte> m_in;
    uint64_t m_messages_sent = 0;
    uint64_t m_bytes_sent = 0;
    std::function<void()> m_on_closed;
    std::function<void()> m_on_drained;
};

// A message held in a buffer of its own (small requests).
class BufferMessage final : public OutgoingMessage {
public:
    explicit BufferMessage(std::vector<std::byte> bytes, Fd fd = {})
        : m_bytes(std::move(bytes))
        , m_fd(std::move(fd))
    {
    }
    std::span<const std::byte> next() override { return std::span(m_bytes).subspan(m_sent); }
    size_t buffered_bytes() const override { return m_bytes.size(); }
    void advance(size_t n) override { m_sent += n; }
    int fd() const override { return m_fd.get(); }
    void fd_sent() override { m_fd.reset(); }

private:
    std::vector<std::byte> m_bytes;
    Fd m_fd;
    size_t m_sent = 0;
};

std::vector<std::byte> encode_message(GpuRequest request, std::span<const std::byte> payload);

} // namespace vgpu::display::qemu
