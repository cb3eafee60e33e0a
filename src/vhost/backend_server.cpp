#include "vhost/backend_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "base/sigbus.h"
#include "base/unix_socket.h"
#include "virtio/features.h"

namespace vgpu::vhost {

namespace {

template <typename T>
std::vector<std::byte> bytes_of(const T& value)
{
    auto span = std::as_bytes(std::span(&value, 1));
    return { span.begin(), span.end() };
}

constexpr uint64_t bit(unsigned b) { return uint64_t(1) << b; }

} // namespace

Result<std::unique_ptr<BackendServer>> BackendServer::create(
    EventLoop& loop, virtio::Device& device, BackendOptions options)
{
    std::unique_ptr<BackendServer> server(new BackendServer(loop, device, options));
    device.set_config_changed_callback([raw = server.get()] { raw->notify_config_changed(); });
    // Guest memory the frontend truncated (base/sigbus.h): the access read zeros; the frontend
    // that did it is dropped here, on the loop.
    if (int fd = sigbus::notify_fd(); fd >= 0)
        server->m_fault_watch = TRY(loop.watch(fd, EPOLLIN, [raw = server.get(), fd](uint32_t) {
            eventfd_drain(fd);
            raw->on_memory_fault();
        }));
    return server;
}

BackendServer::BackendServer(EventLoop& loop, virtio::Device& device, BackendOptions options)
    : m_loop(loop)
    , m_device(device)
    , m_options(options)
{
    for (size_t i = 0; i < device.queue_count(); ++i) {
        m_queues.push_back(std::make_unique<virtio::SplitQueue>(uint16_t(i)));
        m_kick_watches.emplace_back();
    }
}

BackendServer::~BackendServer()
{
    m_device.set_config_changed_callback({});
    if (m_fault_watch)
        m_loop.unwatch(*m_fault_watch);
    if (m_connection)
        disconnect("backend shutting down");
    if (m_listen_watch)
        m_loop.unwatch(*m_listen_watch);
    if (m_listen_retry)
        m_loop.unwatch(*m_listen_retry);
    if (!m_listen_path.empty())
        ::unlink(m_listen_path.c_str());
}

uint64_t BackendServer::offered_features() const
{
    return m_device.device_features() | bit(virtio::F_VERSION_1) | bit(virtio::F_RING_INDIRECT_DESC)
        | bit(virtio::F_RING_EVENT_IDX) | bit(F_PROTOCOL_FEATURES);
}

uint64_t BackendServer::offered_protocol_features() const
{
    uint64_t features = bit(PF_MQ) | bit(PF_REPLY_ACK) | bit(PF_BACKEND_REQ) | bit(PF_CONFIG)
        | bit(PF_RESET_DEVICE) | bit(PF_STATUS);
    if (m_options.offer_configure_mem_slots)
        features |= bit(PF_CONFIGURE_MEM_SLOTS);
    return features;
}

Result<void> BackendServer::listen(const std::string& path)
{
    auto socket = TRY(listen_unix(path, 4, m_options.socket_mode));
    m_listen_socket = std::move(socket);
    m_listen_path = path;
    m_listen_watch = TRY(
        m_loop.watch(m_listen_socket.get(), EPOLLIN, [this](uint32_t) { on_listen_ready(); }));
    VGPU_LOG_INFO("listening on {}", path);
    return {};
}

Result<void> BackendServer::serve_connected(Fd socket)
{
    struct stat st { };
    if (::fstat(socket.get(), &st) < 0 || !S_ISSOCK(st.st_mode))
        return Error::format("fd {} is not a socket", socket.get());
    accept_connection(std::move(socket));
    if (!m_connection)
        return Error::format("could not serve the connected socket");
    return {};
}

void BackendServer::watch_listener()
{
    auto watch = m_loop.watch(
        m_listen_socket.get(), EPOLLIN, [this](uint32_t) { on_listen_ready(); });
    if (watch)
        m_listen_watch = *watch;
    else
        VGPU_LOG_ERROR("cannot listen: {}", watch.error().message);
}

void BackendServer::on_listen_ready()
{
    int s = ::accept4(m_listen_socket.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return;
        // Out of descriptors or memory: the listener stays readable, so try again in a while
        // instead of on every loop turn.
        VGPU_LOG_GUEST(Warn, "accept: {}", std::strerror(errno));
        if (m_listen_watch) {
            m_loop.unwatch(*m_listen_watch);
            m_listen_watch.reset();
        }
        auto retry = m_loop.add_timer(
            std::chrono::milliseconds(100), std::chrono::nanoseconds(0), [this] {
                m_listen_retry.reset();
                if (!m_connection && !m_listen_watch)
                    watch_listener();
            });
        if (retry)
            m_listen_retry = *retry;
        return;
    }
    accept_connection(Fd(s));
}

void BackendServer::accept_connection(Fd socket)
{
    auto connection = Connection::adopt(std::move(socket));
    if (!connection) {
        VGPU_LOG_ERROR("frontend connection: {}", connection.error().message);
        return;
    }
    int fd = connection->fd();
    auto watch = m_loop.watch(
        fd, EPOLLIN | EPOLLRDHUP, [this](uint32_t events) { on_connection_ready(events); });
    if (!watch) {
        VGPU_LOG_ERROR("frontend connection: {}", watch.error().message);
        return;
    }
    m_connection.emplace(connection.release_value());
    m_connection_watch = *watch;
    ++m_stats.connections;
    // One frontend at a time: the next one waits in the listen backlog until this one leaves.
    if (m_listen_watch) {
        m_loop.unwatch(*m_listen_watch);
        m_listen_watch.reset();
    }
    VGPU_LOG_INFO("frontend connected");
}

void BackendServer::disconnect(std::string_view why)
{
    VGPU_LOG_INFO("frontend disconnected: {}", why);
    cancel_message_deadline();
    m_device.frontend_gone();
    reset_device();
    if (m_connection_watch)
        m_loop.unwatch(*m_connection_watch);
    m_connection_watch.reset();
    m_connection.reset();
    m_backend_channel.reset();
    m_memory.clear();
    m_protocol_features = 0;
    m_features = 0;
    m_features_set = false;
    if (m_listen_socket.valid() && !m_listen_watch && !m_listen_retry)
        watch_listener();
    if (m_on_disconnect)
        m_on_disconnect();
}

void BackendServer::on_memory_fault()
{
    ++m_stats.memory_faults;
    VGPU_LOG_GUEST(Warn,
        "guest memory shrank under its mapping (SIGBUS on a lost page): the "
        "access read zeros");
    if (m_connection) {
        ++m_stats.protocol_errors;
        disconnect("guest memory truncated by the frontend");
    }
}

void BackendServer::on_connection_ready(uint32_t events)
{
    auto received = m_connection->receive();
    if (!received) {
        ++m_stats.protocol_errors;
        VGPU_LOG_GUEST(Warn, "frontend protocol error: {}", received.error().message);
        disconnect("protocol error");
        return;
    }
    if (received->closed) {
        disconnect((events & EPOLLERR) ? "socket error" : "end of stream");
        return;
    }
    // One deadline per message, from its first byte: a frontend may not hold a message open
    // (a byte every now and then) for longer.
    if (!received->message) {
        if (m_connection->mid_message() && !m_message_deadline) {
            auto timer = m_loop.add_timer(message_deadline, std::chrono::nanoseconds(0), [this] {
                m_message_deadline.reset(); // a one-shot timer removes itself
                ++m_stats.protocol_errors;
                VGPU_LOG_GUEST(Warn, "frontend message did not arrive whole within {} ms",
                    message_deadline.count());
                disconnect("message did not arrive whole in time");
            });
            if (timer)
                m_message_deadline = *timer;
        }
        return;
    }
    cancel_message_deadline();
    handle_message(*received->message);
}

void BackendServer::cancel_message_deadline()
{
    if (m_message_deadline) {
        m_loop.unwatch(*m_message_deadline);
        m_message_deadline.reset();
    }
}

Result<void> BackendServer::send_reply(const Header& request, std::span<const std::byte> payload)
{
    Header header { request.request, VERSION | FLAG_REPLY, uint32_t(payload.size()) };
    return m_connection->send(header, payload);
}

void BackendServer::handle_message(Message& message)
{
    ++m_stats.requests;
    const Header header = message.header;
    auto name = request_name(header.request);
    VGPU_LOG_DEBUG("<- {} size {} fds {}{}", name, header.size, message.fds.size(),
        (header.flags & FLAG_NEED_REPLY) ? " need_reply" : "");

    Result<Reply> reply = Error {};
    auto decoded = decode_request(header, message.payload, message.fds.size());
    if (!decoded) {
        reply = decoded.release_error();
    } else {
        Context context { message };
        reply = std::visit(
            [&](const auto& request) -> Result<Reply> { return handle(request, context); },
            *decoded);
    }
    // Descriptors nobody took are closed here, as Fds.
    message.fds.clear();
    if (!m_connection)
        return; // a handler disconnected

    bool mandatory = has_mandatory_reply(header.request);
    if (!reply) {
        ++m_stats.failed_requests;
        VGPU_LOG_GUEST(Warn, "{} failed: {}", name, reply.error().message);
        if (mandatory) {
            // The frontend waits for an answer we cannot give: leave rather than let it hang or
            // read garbage.
            ++m_stats.protocol_errors;
            disconnect(fmt::format("{} could not be answered", name));
            return;
        }
        if ((header.flags & FLAG_NEED_REPLY) && protocol_feature(PF_REPLY_ACK)) {
            uint64_t failure = 1;
            if (auto r = send_reply(header, std::as_bytes(std::span(&failure, 1))); !r)
                disconnect(r.error().message);
        }
        return;
    }
    Result<void> sent {};
    if (reply->has_value())
        sent = send_reply(header, **reply);
    else if ((header.flags & FLAG_NEED_REPLY) && protocol_feature(PF_REPLY_ACK)) {
        uint64_t success = 0;
        sent = send_reply(header, std::as_bytes(std::span(&success, 1)));
    }
    if (!sent)
        disconnect(sent.error().message);
}

Result<virtio::SplitQueue*> BackendServer::queue_for(uint32_t index, std::string_view request)
{
    if (index >= m_queues.size())
        return Error::format(
            "{}: queue index {} out of range (the device has {})", request, index, m_queues.size());
    return m_queues[index].get();
}

// ---- features -------------------------------------------------------------------------------

BackendServer::Reply BackendServer::handle(const req::GetFeatures&, Context&)
{
    return bytes_of(offered_features());
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetFeatures& request, Context&)
{
    uint64_t offered = offered_features();
    uint64_t unoffered = request.features & ~offered;
    // QEMU 10 acks VIRTIO_F_RING_RESET (bit 40) although nobody offered it: mask, log, go on.
    m_stats.masked_feature_bits = unoffered;
    if (unoffered)
        VGPU_LOG_GUEST(Info, "SET_FEATURES {:#x}: ignoring bits {:#x} that were never offered",
            request.features, unoffered);
    m_features = request.features & offered;
    m_features_set = true;
    for (auto& q : m_queues) {
        q->set_event_idx(m_features & bit(virtio::F_RING_EVENT_IDX));
        q->set_indirect(m_features & bit(virtio::F_RING_INDIRECT_DESC));
    }
    m_device.set_acked_features(m_features & m_device.device_features());
    return Reply {};
}

BackendServer::Reply BackendServer::handle(const req::GetProtocolFeatures&, Context&)
{
    return bytes_of(offered_protocol_features());
}

BackendServer::Reply BackendServer::handle(const req::SetProtocolFeatures& request, Context&)
{
    uint64_t unoffered = request.features & ~offered_protocol_features();
    if (unoffered)
        VGPU_LOG_GUEST(Info,
            "SET_PROTOCOL_FEATURES {:#x}: ignoring bits {:#x} that were never offered",
            request.features, unoffered);
    m_protocol_features = request.features & offered_protocol_features();
    return Reply {};
}

BackendServer::Reply BackendServer::handle(const req::GetQueueNum&, Context&)
{
    return bytes_of(uint64_t(m_queues.size()));
}

BackendServer::Reply BackendServer::handle(const req::GetMaxMemSlots&, Context&)
{
    return bytes_of(uint64_t(virtio::GuestMemory::max_regions));
}

// ---- ownership, reset, status ---------------------------------------------------------------

BackendServer::Reply BackendServer::handle(const req::SetOwner&, Context&) { return Reply {}; }

BackendServer::Reply BackendServer::handle(const req::ResetOwner&, Context&)
{
    // Deprecated; treated as a device reset, as libvhost-user does.
    reset_device();
    return Reply {};
}

BackendServer::Reply BackendServer::handle(const req::ResetDevice&, Context&)
{
    reset_device();
    return Reply {};
}

BackendServer::Reply BackendServer::handle(const req::SetStatus& request, Context&)
{
    // virtio 1.3 §2.1: writing 0 resets the device.
    if (request.status == 0)
        reset_device();
    m_status = request.status;
    return Reply {};
}

BackendServer::Reply BackendServer::handle(const req::GetStatus&, Context&)
{
    return bytes_of(uint64_t(m_status));
}

void BackendServer::reset_device()
{
    for (auto& q : m_queues) {
        stop_queue(*q, StopKind::Reset);
        q->reset();
    }
    m_features = 0;
    m_features_set = false;
    m_status = 0;
    m_device.reset();
}

// ---- memory ---------------------------------------------------------------------------------

Result<BackendServer::Reply> BackendServer::handle(
    const req::SetMemTable& request, Context& context)
{
    TRY(m_memory.replace(request.regions, context.message.fds));
    memory_changed();
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::AddMemReg& request, Context& context)
{
    if (!protocol_feature(PF_CONFIGURE_MEM_SLOTS))
        return Error::format("ADD_MEM_REG without CONFIGURE_MEM_SLOTS");
    TRY(m_memory.add_region(request.region, context.message.fds.at(0)));
    memory_changed();
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::RemMemReg& request, Context&)
{
    if (!protocol_feature(PF_CONFIGURE_MEM_SLOTS))
        return Error::format("REM_MEM_REG without CONFIGURE_MEM_SLOTS");
    TRY(m_memory.remove_region(request.region));
    memory_changed();
    return Reply {};
}

void BackendServer::memory_changed()
{
    m_device.memory_changed(m_memory);
    for (auto& q : m_queues) {
        if (q->running()) {
            if (auto r = q->start(m_memory); !r) {
                VGPU_LOG_GUEST(Warn, "after a memory table change: {}", r.error().message);
                stop_queue(*q, StopKind::Reset); // its rings are gone: nothing can be answered
            }
        } else if (auto r = maybe_start(*q); !r) {
            VGPU_LOG_GUEST(Warn, "after a memory table change: {}", r.error().message);
        }
    }
}

// ---- vrings ---------------------------------------------------------------------------------

Result<BackendServer::Reply> BackendServer::handle(const req::SetVringNum& request, Context&)
{
    auto* q = TRY(queue_for(request.index, "SET_VRING_NUM"));
    TRY(q->set_size(request.num));
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetVringAddr& request, Context&)
{
    auto* q = TRY(queue_for(request.addr.index, "SET_VRING_ADDR"));
    if (q->running())
        return Error::format("SET_VRING_ADDR: queue {} is running", request.addr.index);
    TRY(q->set_addresses(request.addr.descriptor, request.addr.available, request.addr.used));
    TRY(maybe_start(*q));
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetVringBase& request, Context&)
{
    auto* q = TRY(queue_for(request.index, "SET_VRING_BASE"));
    TRY(q->set_base(request.num));
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::GetVringBase& request, Context&)
{
    auto* q = TRY(queue_for(request.index, "GET_VRING_BASE"));
    // vhost-user.rst: the ring stops on GET_VRING_BASE; it starts again on the next SET_VRING_KICK.
    stop_queue(*q);
    uint16_t next = q->next_avail();
    q->set_kick(Fd());
    return Reply(bytes_of(VringState { request.index, next }));
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetVringFd& request, Context& context)
{
    static constexpr std::string_view names[] = { "SET_VRING_KICK", "SET_VRING_CALL",
        "SET_VRING_ERR" };
    auto* q = TRY(queue_for(request.index, names[size_t(request.kind)]));
    Fd fd = request.has_fd ? std::move(context.message.fds.at(0)) : Fd();
    // The loop reads kick fds and writes call fds: a blocking one (an eventfd without
    // EFD_NONBLOCK, a full pipe) would hold the loop in read() or write().
    if (fd.valid())
        TRY(set_nonblocking(fd.get()));
    switch (request.kind) {
    case req::VringFdKind::Kick:
        if (!request.has_fd)
            return Error::format("SET_VRING_KICK without an fd: polling mode is not supported");
        stop_queue(*q);
        q->set_kick(std::move(fd));
        // Without protocol features a ring is enabled as soon as it has a kick fd.
        if (!(m_features & bit(F_PROTOCOL_FEATURES)))
            q->set_enabled(true);
        TRY(maybe_start(*q));
        break;
    case req::VringFdKind::Call:
        // QEMU swaps call eventfds while queues run (TCG): an interrupt sent to the old fd
        // meanwhile must not be lost, so the new fd is signalled once.
        q->set_call(std::move(fd));
        if (q->running())
            q->signal_call();
        break;
    case req::VringFdKind::Err:
        q->set_err(std::move(fd));
        break;
    }
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetVringEnable& request, Context&)
{
    auto* q = TRY(queue_for(request.index, "SET_VRING_ENABLE"));
    q->set_enabled(request.enable);
    if (request.enable)
        TRY(maybe_start(*q));
    else
        stop_queue(*q);
    return Reply {};
}

Result<void> BackendServer::maybe_start(virtio::SplitQueue& q)
{
    if (q.running() || !q.enabled() || !q.kick().valid() || !q.has_addresses() || q.size() == 0
        || m_memory.region_count() == 0)
        return {};
    TRY(q.start(m_memory));
    auto watch = m_loop.watch(q.kick().get(), EPOLLIN, [this, &q](uint32_t) { on_kick(q); });
    if (!watch) {
        q.stop();
        return Error::format("queue {}: {}", q.index(), watch.error().message);
    }
    m_kick_watches[q.index()] = *watch;
    VGPU_LOG_DEBUG("queue {} started (size {}, base {})", q.index(), q.size(), q.next_avail());
    // Buffers may already be waiting (a restarted ring, or a kick sent before the fd was set).
    on_kick(q);
    return {};
}

void BackendServer::stop_queue(virtio::SplitQueue& q, StopKind kind)
{
    if (auto& watch = m_kick_watches[q.index()]) {
        m_loop.unwatch(*watch);
        watch.reset();
    }
    if (!q.running())
        return;
    // A reset drops the driver's state: nothing is answered into rings it is about to free.
    if (kind == StopKind::AnswerHeldBuffers)
        m_device.queue_stopping(q);
    q.stop();
}

void BackendServer::on_kick(virtio::SplitQueue& q)
{
    eventfd_drain(q.kick().get());
    if (q.running())
        m_device.process_queue(q, m_memory);
}

// ---- config, backend channel, display socket --------------------------------------------------

Result<BackendServer::Reply> BackendServer::handle(const req::GetConfig& request, Context&)
{
    std::vector<std::byte> reply(sizeof(ConfigHeader) + request.size);
    ConfigHeader header { request.offset, request.size, request.flags };
    std::memcpy(reply.data(), &header, sizeof(header));
    TRY(m_device.read_config(request.offset, std::span(reply).subspan(sizeof(ConfigHeader))));
    return Reply(std::move(reply));
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetConfig& request, Context&)
{
    TRY(m_device.write_config(request.offset, request.data));
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::SetBackendReqFd&, Context& context)
{
    if (!protocol_feature(PF_BACKEND_REQ))
        return Error::format("SET_BACKEND_REQ_FD without BACKEND_REQ");
    auto channel = TRY(Connection::adopt(std::move(context.message.fds.at(0))));
    m_backend_channel.emplace(std::move(channel));
    return Reply {};
}

Result<BackendServer::Reply> BackendServer::handle(const req::GpuSetSocket&, Context& context)
{
    TRY(m_device.set_display_socket(std::move(context.message.fds.at(0))));
    return Reply {};
}

void BackendServer::notify_config_changed()
{
    if (!m_backend_channel || !protocol_feature(PF_CONFIG))
        return;
    Header header { uint32_t(BackendRequest::ConfigChangeMsg), VERSION, 0 };
    if (auto r = m_backend_channel->send(header, {}); !r)
        VGPU_LOG_WARN("CONFIG_CHANGE_MSG: {}", r.error().message);
}

} // namespace vgpu::vhost
