#include "harness/display_peer.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <span>
#include <stdexcept>

#include "display/qemu/wire.h"
#include "virtio_gpu/wire.h"

namespace vgpu::harness {

using display::qemu::GpuHeader;
using display::qemu::GpuRequest;

DisplayPeer::DisplayPeer(uint64_t protocol_features)
    : m_protocol_features(protocol_features)
{
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        throw std::runtime_error("socketpair");
    m_ours = Fd(pair[0]);
    m_backend_end = Fd(pair[1]);
    auto stop = make_eventfd();
    if (!stop)
        throw std::runtime_error(stop.error().message);
    m_stop = stop.release_value();
    m_thread = std::thread([this] { run(); });
}

DisplayPeer::~DisplayPeer()
{
    (void)eventfd_signal(m_stop.get());
    m_thread.join();
}

bool DisplayPeer::read_exact(std::byte* out, size_t size)
{
    size_t done = 0;
    while (done < size) {
        {
            // Paused: do not touch the socket; wake up now and then to see whether we may go on.
            std::unique_lock lock(m_mutex);
            while (m_paused) {
                lock.unlock();
                pollfd stop { m_stop.get(), POLLIN, 0 };
                if (::poll(&stop, 1, 10) > 0)
                    return false;
                lock.lock();
            }
        }
        pollfd p[2] = { { m_ours.get(), POLLIN, 0 }, { m_stop.get(), POLLIN, 0 } };
        if (::poll(p, 2, -1) < 0)
            return false;
        if (p[1].revents)
            return false;
        iovec iov { out + done, size - done };
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] {};
        msghdr msg {};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = ::recvmsg(m_ours.get(), &msg, MSG_CMSG_CLOEXEC);
        if (n <= 0)
            return false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; ++i) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                m_received_fd = std::make_shared<const Fd>(fd); // the last one counts
            }
        }
        done += size_t(n);
    }
    return true;
}

void DisplayPeer::reply(uint32_t request, std::span<const std::byte> payload)
{
    GpuHeader header { request, display::qemu::GPU_FLAG_REPLY, uint32_t(payload.size()) };
    std::vector<std::byte> out(sizeof(header) + payload.size());
    std::memcpy(out.data(), &header, sizeof(header));
    if (!payload.empty()) // DMABUF_UPDATE's reply has none (memcpy from null is undefined)
        std::memcpy(out.data() + sizeof(header), payload.data(), payload.size());
    [[maybe_unused]] auto n = ::send(m_ours.get(), out.data(), out.size(), MSG_NOSIGNAL);
}

void DisplayPeer::run()
{
    for (;;) {
        GpuHeader header;
        if (!read_exact(reinterpret_cast<std::byte*>(&header), sizeof(header)))
            break;
        DisplayMessage message { header.request, header.flags, std::vector<std::byte>(header.size),
            nullptr };
        if (header.size && !read_exact(message.payload.data(), header.size))
            break;
        message.fd = std::exchange(m_received_fd, nullptr);
        answer(message);
        std::lock_guard lock(m_mutex);
        m_messages.push_back(std::move(message));
        m_changed.notify_all();
    }
    std::lock_guard lock(m_mutex);
    m_closed = true;
    m_changed.notify_all();
}

void DisplayPeer::set_outputs(std::vector<std::pair<uint32_t, uint32_t>> outputs)
{
    std::lock_guard lock(m_mutex);
    m_outputs = std::move(outputs);
}

void DisplayPeer::set_reading_paused(bool paused)
{
    std::lock_guard lock(m_mutex);
    m_paused = paused;
}

void DisplayPeer::set_holding_dmabuf_replies(bool holding)
{
    size_t release = 0;
    {
        std::lock_guard lock(m_mutex);
        m_holding_dmabuf = holding;
        if (!holding)
            release = std::exchange(m_held_dmabuf_replies, 0);
    }
    for (size_t i = 0; i < release; ++i)
        reply(uint32_t(GpuRequest::DmabufUpdate), {});
}

void DisplayPeer::set_silent(bool silent)
{
    std::lock_guard lock(m_mutex);
    m_silent = silent;
}

std::vector<uint8_t> DisplayPeer::fake_edid(uint32_t scanout)
{
    std::vector<uint8_t> edid(128, 0);
    const uint8_t header[8] = { 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00 };
    std::memcpy(edid.data(), header, 8);
    edid[8] = 0x51; // marks QEMU's blob apart from ours
    edid[9] = uint8_t(scanout);
    uint8_t sum = 0;
    for (size_t i = 0; i < 127; ++i)
        sum = uint8_t(sum + edid[i]);
    edid[127] = uint8_t(256 - sum);
    return edid;
}

void DisplayPeer::answer(const DisplayMessage& message)
{
    std::vector<std::pair<uint32_t, uint32_t>> outputs;
    {
        std::lock_guard lock(m_mutex);
        if (m_silent)
            return;
        outputs = m_outputs;
    }
    switch (static_cast<GpuRequest>(message.request)) {
    case GpuRequest::GetProtocolFeatures:
        reply(message.request, std::as_bytes(std::span(&m_protocol_features, 1)));
        break;
    case GpuRequest::GetDisplayInfo: {
        virtio_gpu::RespDisplayInfo info {};
        info.hdr.type = uint32_t(virtio_gpu::CtrlType::OkDisplayInfo);
        for (size_t i = 0; i < outputs.size() && i < virtio_gpu::MAX_SCANOUTS; ++i) {
            info.pmodes[i].r = { 0, 0, outputs[i].first, outputs[i].second };
            info.pmodes[i].enabled = 1;
        }
        reply(message.request, std::as_bytes(std::span(&info, 1)));
        break;
    }
    case GpuRequest::GetEdid: {
        uint32_t scanout = 0;
        if (message.payload.size() >= 4)
            std::memcpy(&scanout, message.payload.data(), 4);
        virtio_gpu::RespEdid edid {};
        edid.hdr.type = uint32_t(virtio_gpu::CtrlType::OkEdid);
        auto blob = fake_edid(scanout);
        edid.size = uint32_t(blob.size());
        std::memcpy(edid.edid, blob.data(), blob.size());
        reply(message.request, std::as_bytes(std::span(&edid, 1)));
        break;
    }
    case GpuRequest::DmabufUpdate: {
        // Drawn (at once, or when the test lets the held replies go).
        {
            std::lock_guard lock(m_mutex);
            if (m_holding_dmabuf) {
                ++m_held_dmabuf_replies;
                break;
            }
        }
        reply(message.request, {});
        break;
    }
    default:
        break;
    }
}

std::vector<DisplayMessage> DisplayPeer::messages() const
{
    std::lock_guard lock(m_mutex);
    return m_messages;
}

std::optional<DisplayMessage> DisplayPeer::wait_for(
    uint32_t request, std::chrono::milliseconds timeout) const
{
    std::unique_lock lock(m_mutex);
    std::optional<DisplayMessage> found;
    m_changed.wait_for(lock, timeout, [&] {
        for (const auto& m : m_messages)
            if (m.request == request) {
                found = m;
                return true;
            }
        return m_closed;
    });
    return found;
}

std::optional<DisplayMessage> DisplayPeer::wait_for_matching(uint32_t request,
    const std::function<bool(const DisplayMessage&)>& match,
    std::chrono::milliseconds timeout) const
{
    std::unique_lock lock(m_mutex);
    std::optional<DisplayMessage> found;
    m_changed.wait_for(lock, timeout, [&] {
        for (const auto& m : m_messages)
            if (m.request == request && match(m)) {
                found = m;
                return true;
            }
        return m_closed;
    });
    return found;
}

std::optional<DisplayMessage> DisplayPeer::wait_for_nth(
    uint32_t request, size_t index, std::chrono::milliseconds timeout) const
{
    std::unique_lock lock(m_mutex);
    std::optional<DisplayMessage> found;
    m_changed.wait_for(lock, timeout, [&] {
        size_t seen = 0;
        for (const auto& m : m_messages)
            if (m.request == request && seen++ == index) {
                found = m;
                return true;
            }
        return m_closed;
    });
    return found;
}

size_t DisplayPeer::count(uint32_t request) const
{
    std::lock_guard lock(m_mutex);
    size_t n = 0;
    for (const auto& m : m_messages)
        n += m.request == request;
    return n;
}

bool DisplayPeer::wait_quiet(
    std::chrono::milliseconds quiet, std::chrono::milliseconds timeout) const
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(m_mutex);
    for (;;) {
        size_t before = m_messages.size();
        if (!m_changed.wait_for(
                lock, quiet, [&] { return m_messages.size() != before || m_closed; }))
            return true; // nothing for `quiet`
        if (m_closed)
            return true;
        if (std::chrono::steady_clock::now() > deadline)
            return false;
    }
}

bool DisplayPeer::closed() const
{
    std::lock_guard lock(m_mutex);
    return m_closed;
}

} // namespace vgpu::harness
