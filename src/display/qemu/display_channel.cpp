#include "display/qemu/display_channel.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/unix_socket.h"

#include "base/log.h"

namespace vgpu::display::qemu {

std::vector<std::byte> encode_message(GpuRequest request, std::span<const std::byte> payload)
{
    GpuHeader header { uint32_t(request), 0, uint32_t(payload.size()) };
    std::vector<std::byte> message(sizeof(header) + payload.size());
    std::memcpy(message.data(), &header, sizeof(header));
    if (!payload.empty())
        std::memcpy(message.data() + sizeof(header), payload.data(), payload.size());
    return message;
}

Result<std::unique_ptr<DisplayChannel>> DisplayChannel::create(EventLoop& loop, Fd socket)
{
    TRY(set_nonblocking(socket.get()));
    // QEMU reads a message whole, blocking its main loop until the last byte arrives: an UPDATE
    // that trickles out one small socket buffer per loop turn (between our transfers) stalls it
    // for as long. A send buffer that holds a whole 1080p frame lets an UPDATE go out in one
    // go. The kernel caps the request at net.core.wmem_max; a smaller buffer only costs time.
    int wanted = int(sizeof_send_buffer);
    if (::setsockopt(socket.get(), SOL_SOCKET, SO_SNDBUF, &wanted, sizeof(wanted)) < 0)
        VGPU_LOG_DEBUG("display: SO_SNDBUF {}: {}", wanted, std::strerror(errno));
    std::unique_ptr<DisplayChannel> channel(new DisplayChannel(loop, std::move(socket)));
    channel->m_watch = TRY(loop.watch(channel->m_socket.get(), EPOLLIN | EPOLLRDHUP,
        [raw = channel.get()](uint32_t events) { raw->on_ready(events); }));
    return channel;
}

DisplayChannel::~DisplayChannel()
{
    if (m_socket.valid())
        m_loop.unwatch(m_watch);
}

void DisplayChannel::send(
    GpuRequest request, std::span<const std::byte> payload, ReplyHandler on_reply, Fd fd)
{
    if (!m_socket.valid())
        return;
    // Callers keep the latest state instead of queueing every change (QemuDisplay), so the
    // queue stays small; a queue that grows past the cap anyway is a peer we cannot serve.
    size_t bytes = sizeof(GpuHeader) + payload.size();
    if (m_queued_bytes + bytes > max_queued_bytes) {
        close(fmt::format("more than {} bytes waiting for QEMU to read", max_queued_bytes));
        return;
    }
    if (on_reply)
        m_pending_replies.push_back(std::move(on_reply));
    m_queued_bytes += bytes;
    auto message = std::make_unique<BufferMessage>(encode_message(request, payload), std::move(fd));
    send_message(std::move(message));
}

void DisplayChannel::send_message(std::unique_ptr<OutgoingMessage> message)
{
    if (!m_socket.valid())
        return;
    m_queue.push_back(std::move(message));
    flush();
}

void DisplayChannel::flush()
{
    bool sent_any = false;
    while (m_socket.valid() && !m_queue.empty()) {
        auto bytes = m_queue.front()->next();
        if (bytes.empty()) {
            m_queued_bytes -= m_queue.front()->buffered_bytes();
            m_queue.pop_front();
            ++m_messages_sent;
            sent_any = true;
            continue;
        }
        ssize_t n = 0;
        if (int fd = m_queue.front()->fd(); fd >= 0) {
            // The descriptor rides on the message's first bytes (QEMU reads it with them).
            iovec iov { const_cast<std::byte*>(bytes.data()), bytes.size() };
            RightsBuffer control;
            msghdr msg {};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            attach_rights(msg, control, std::span(&fd, 1));
            n = ::sendmsg(m_socket.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                m_queue.front()->fd_sent();
        } else {
            n = ::send(m_socket.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            close(fmt::format("send: {}", std::strerror(errno)));
            return;
        }
        m_queue.front()->advance(size_t(n));
        m_bytes_sent += uint64_t(n);
    }
    update_interest();
    if (sent_any && m_queue.empty() && m_socket.valid() && m_on_drained)
        m_on_drained();
}

void DisplayChannel::update_interest()
{
    if (!m_socket.valid())
        return;
    bool want = !m_queue.empty();
    if (want == m_want_write)
        return;
    m_want_write = want;
    (void)m_loop.modify(m_watch, EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u));
}

void DisplayChannel::on_ready(uint32_t events)
{
    if (events & EPOLLOUT)
        flush();
    if (m_socket.valid() && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        read_replies();
}

void DisplayChannel::read_replies()
{
    // QEMU sends only replies, one per request with a reply: each chunk is parsed as it
    // arrives, so a peer that sends without end is refused after its first bad header (and
    // never has more than a chunk and a reply of ours in memory), and a wakeup reads a bounded
    // amount however fast it writes.
    std::byte buffer[4096];
    constexpr int max_reads_per_wakeup = 16;
    for (int reads = 0; reads < max_reads_per_wakeup && m_socket.valid(); ++reads) {
        ssize_t n = ::recv(m_socket.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            close(n == 0 ? "QEMU closed the display socket"
                         : fmt::format("recv: {}", std::strerror(errno)));
            return;
        }
        m_in.insert(m_in.end(), buffer, buffer + n);
        parse_replies();
    }
}

void DisplayChannel::parse_replies()
{
    while (m_socket.valid() && m_in.size() >= sizeof(GpuHeader)) {
        GpuHeader header;
        std::memcpy(&header, m_in.data(), sizeof(header));
        if (!(header.flags & GPU_FLAG_REPLY) || header.size > GPU_MAX_REPLY
            || m_pending_replies.empty()) {
            close(fmt::format("unexpected message {} (flags {:#x}, size {}) from QEMU",
                header.request, header.flags, header.size));
            return;
        }
        if (m_in.size() < sizeof(header) + header.size)
            return;
        auto handler = std::move(m_pending_replies.front());
        m_pending_replies.pop_front();
        std::vector<std::byte> payload(
            m_in.begin() + sizeof(header), m_in.begin() + long(sizeof(header) + header.size));
        m_in.erase(m_in.begin(), m_in.begin() + long(sizeof(header) + header.size));
        handler(payload);
    }
}

void DisplayChannel::close(std::string_view why)
{
    if (!m_socket.valid())
        return;
    VGPU_LOG_INFO("display socket closed: {}", why);
    m_loop.unwatch(m_watch);
    m_socket.reset();
    m_queue.clear();
    m_queued_bytes = 0;
    m_pending_replies.clear();
    if (m_on_closed)
        m_on_closed();
}

} // namespace vgpu::display::qemu
