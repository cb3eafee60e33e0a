#include "display/export/export_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "base/unix_socket.h"
#include "virtio_gpu/formats.h"

namespace vgpu::display {

namespace ex = vgpu::exporting;

// An exclusive lease's hold on a 2D resource's storage that its consumer still reads: a transfer
// into the storage waits for it (Device::handle(TransferToHost2d)) until the consumer
// acknowledges the generation, or until the release timeout makes it let go.
class ExportServer::Hold final : public virtio_gpu::StorageReader {
public:
    Hold(std::shared_ptr<const virtio_gpu::PixelStorage> pixels, uint64_t generation,
        uint64_t& timeouts)
        : m_pixels(std::move(pixels))
        , m_generation(generation)
        , m_timeouts(timeouts)
    {
        m_pixels->add_reader(this);
    }
    ~Hold() override { release(); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    void let_go() override
    {
        ++m_timeouts;
        release();
    }
    bool holds_for_consumer() const override { return true; }

    const void* key() const { return m_key; }
    bool active() const { return m_pixels != nullptr; }
    uint64_t generation() const { return m_generation; }
    void shown_again(uint64_t generation) { m_generation = generation; }

private:
    void release()
    {
        if (auto pixels = std::move(m_pixels))
            pixels->remove_reader(this);
    }
    std::shared_ptr<const virtio_gpu::PixelStorage> m_pixels;
    const void* m_key = m_pixels.get();
    uint64_t m_generation;
    uint64_t& m_timeouts;
};

namespace {

ex::Rect32 rect32(const Rect& r) { return { r.x, r.y, r.width, r.height }; }

Rect bounding(const ex::Rect32& a, const ex::Rect32& b)
{
    uint32_t x0 = std::min(a.x, b.x), y0 = std::min(a.y, b.y);
    uint32_t x1 = std::max(a.x + a.width, b.x + b.width);
    uint32_t y1 = std::max(a.y + a.height, b.y + b.height);
    return Rect { x0, y0, x1 - x0, y1 - y0 };
}

bool contains(const ex::Rect32& outer, const ex::Rect32& inner)
{
    return inner.x >= outer.x && inner.y >= outer.y
        && inner.x + inner.width <= outer.x + outer.width
        && inner.y + inner.height <= outer.y + outer.height;
}

// Adds `r` to a FLIP's damage: as a rectangle of its own while 8 suffice, else all of them
// merged into their bounding box.
void add_damage(ex::Flip& flip, const ex::Rect32& r)
{
    for (uint32_t i = 0; i < flip.rects; ++i)
        if (contains(flip.damage[i], r))
            return;
    if (flip.rects < ex::FLIP_RECTS) {
        flip.damage[flip.rects++] = r;
        return;
    }
    ex::Rect32 all = r;
    for (uint32_t i = 0; i < flip.rects; ++i)
        all = rect32(bounding(all, flip.damage[i]));
    flip.damage = {};
    flip.damage[0] = all;
    flip.rects = 1;
}

// Returns when it signalled (CLOCK_MONOTONIC ns, FLIP's time_ns), read just before the write.
uint64_t signal(const Fd& eventfd)
{
    uint64_t now = ex::monotonic_ns();
    uint64_t one = 1;
    // Non-blocking: the counter only overflows after 2^64 - 1 unread flips.
    [[maybe_unused]] ssize_t n = ::write(eventfd.get(), &one, sizeof(one));
    return now;
}

} // namespace

Result<std::unique_ptr<ExportServer>> ExportServer::create(
    EventLoop& loop, const std::string& path, ExportOptions options)
{
    Fd listener = TRY(listen_unix(path, 64, options.mode, SOCK_SEQPACKET));
    if (options.group && ::chown(path.c_str(), uid_t(-1), *options.group) != 0)
        return Error::from_errno(fmt::format("chown({}, group {})", path, *options.group));
    std::unique_ptr<ExportServer> server(new ExportServer(loop, std::move(listener), options));
    auto* raw = server.get();
    server->m_listen_watch = TRY(loop.watch(
        server->m_listener.get(), EPOLLIN, [raw](uint32_t) { raw->accept_consumers(); }));
    VGPU_LOG_INFO("export: listening on {}", path);
    return server;
}

ExportServer::ExportServer(EventLoop& loop, Fd listener, ExportOptions options)
    : m_loop(loop)
    , m_listener(std::move(listener))
    , m_options(std::move(options))
{
}

ExportServer::~ExportServer()
{
    for (auto& [id, refused] : m_refused)
        m_loop.unwatch(refused.watch);
    for (auto& [id, consumer] : m_consumers)
        m_loop.unwatch(consumer->watch);
    if (m_listen_watch)
        m_loop.unwatch(m_listen_watch);
}

ExportServer::Consumer* ExportServer::find(uint64_t id)
{
    auto it = m_consumers.find(id);
    return it == m_consumers.end() ? nullptr : it->second.get();
}

void ExportServer::accept_consumers()
{
    for (;;) {
        int raw = ::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (raw < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                VGPU_LOG_WARN("export: accept: {}", std::strerror(errno));
            return;
        }
        Fd socket(raw);
        if (m_consumers.size() >= m_options.max_consumers) {
            refuse(std::move(socket));
            continue;
        }
        auto consumer = std::make_unique<Consumer>();
        consumer->id = m_next_consumer++;
        consumer->socket = std::move(socket);
        // A small send buffer: a consumer that stops reading fills it after a few hundred
        // records, and from then on its flips coalesce in our queue instead of piling up.
        int sndbuf = 64 * 1024;
        ::setsockopt(consumer->socket.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        ucred credentials {};
        socklen_t length = sizeof(credentials);
        if (::getsockopt(consumer->socket.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length)
            == 0)
            consumer->pid = credentials.pid;
        uint64_t id = consumer->id;
        auto watch = m_loop.watch(consumer->socket.get(), EPOLLIN, [this, id](uint32_t events) {
            if (auto* c = find(id); c && (events & EPOLLOUT))
                flush(*c);
            if (auto* c = find(id); c && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                readable(*c);
        });
        if (!watch) {
            VGPU_LOG_WARN("export: {}", watch.error().message);
            continue;
        }
        consumer->watch = *watch;
        ++m_stats.consumers_accepted;
        VGPU_LOG_DEBUG("export: consumer {} connected (pid {})", id, consumer->pid);
        m_consumers[id] = std::move(consumer);
    }
}

void ExportServer::refuse(Fd socket)
{
    ++m_stats.consumers_refused;
    ex::ErrorReply e { uint32_t(ex::ErrorCode::Busy), 0, {} };
    ex::set_text(e.text, fmt::format("{} consumers already", m_consumers.size()));
    auto packet = ex::encode(e, 0);
    (void)ex::send_packet(socket.get(), packet, {});
    ::shutdown(socket.get(), SHUT_WR);
    // Those kept longest go first: at most as many as consumers, none for more than a second.
    auto now = std::chrono::steady_clock::now();
    for (auto it = m_refused.begin(); it != m_refused.end();) {
        if (m_refused.size() < m_options.max_consumers
            && now - it->second.since < std::chrono::seconds(1)) {
            ++it;
            continue;
        }
        m_loop.unwatch(it->second.watch);
        it = m_refused.erase(it);
    }
    uint64_t id = m_next_refused++;
    int raw = socket.get();
    auto watch = m_loop.watch(raw, EPOLLIN, [this, id, raw](uint32_t) {
        // Read what it sent; its close (or an error) ends it.
        std::byte buffer[ex::MAX_PACKET];
        for (;;) {
            ssize_t n = ::recv(raw, buffer, sizeof(buffer), MSG_DONTWAIT);
            if (n > 0)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            break;
        }
        auto it = m_refused.find(id);
        if (it == m_refused.end())
            return;
        m_loop.unwatch(it->second.watch);
        // Freed after this callback: the loop may still hold the watch's closure.
        m_loop.post(m_lifetime.guard([this, id] { m_refused.erase(id); }));
    });
    if (!watch)
        return; // closed now: the ERROR may be lost, nothing worse
    m_refused[id] = Refused { std::move(socket), *watch, now };
}

void ExportServer::readable(Consumer& consumer)
{
    uint64_t id = consumer.id;
    // A bounded number per wake-up, so that one chatty consumer cannot starve the loop.
    for (int i = 0; i < 64; ++i) {
        auto* c = find(id);
        if (!c)
            return;
        auto packet = ex::receive_packet(c->socket.get());
        if (!packet) {
            ++m_stats.bad_messages;
            error(*c, 0, ex::ErrorCode::BadMessage, packet.error().message);
            drop(id, packet.error().message);
            return;
        }
        if (packet->state == ex::Received::State::Closed) {
            drop(id, "it closed the connection");
            return;
        }
        if (packet->state == ex::Received::State::Empty)
            return;
        auto message = ex::parse(packet->bytes, std::move(packet->fds));
        if (!message) {
            ++m_stats.bad_messages;
            uint32_t serial = 0;
            if (packet->bytes.size() >= sizeof(ex::Header))
                std::memcpy(
                    &serial, packet->bytes.data() + offsetof(ex::Header, serial), sizeof(serial));
            error(*c, serial, message.error().code, message.error().reason);
            drop(id, message.error().reason);
            return;
        }
        handle(*c, *message);
    }
}

void ExportServer::handle(Consumer& c, const ex::Message& m)
{
    uint32_t serial = m.header.serial;
    if (!m.known) {
        error(c, serial, ex::ErrorCode::UnknownType,
            fmt::format("unknown message type {}", m.header.type));
        return;
    }
    if (!c.hello && m.type() != ex::Type::Hello) {
        error(c, serial, ex::ErrorCode::Order,
            fmt::format("{} before HELLO", ex::type_name(m.header.type)));
        return;
    }
    switch (m.type()) {
    case ex::Type::Hello: {
        auto hello = *m.as<ex::Hello>();
        if (c.hello) {
            error(c, serial, ex::ErrorCode::Order, "HELLO twice");
            return;
        }
        if (hello.major != ex::VERSION_MAJOR) {
            error(c, serial, ex::ErrorCode::Version,
                fmt::format("version {}.{}: this backend speaks {}.{}", hello.major, hello.minor,
                    ex::VERSION_MAJOR, ex::VERSION_MINOR));
            drop(c.id, "a protocol version we do not speak");
            return;
        }
        c.hello = true;
        c.name = ex::get_text(hello.name);
        ex::Welcome welcome { ex::VERSION_MAJOR, ex::VERSION_MINOR,
            m_options.max_leases_per_consumer, 0 };
        queue(c, { ex::encode(welcome, serial), {} });
        return;
    }
    case ex::Type::Probe: {
        uint32_t count = m_options.output_count();
        uint32_t flags = ex::PROBE_CURSOR | (m_options.crc ? ex::PROBE_CRC : 0);
        ex::ProbeReply reply { m_options.plane_types, count, flags,
            uint32_t(m_options.release_timeout.count()) };
        uint64_t id = c.id;
        queue(c, { ex::encode(reply, serial), {} });
        for (uint32_t i = 0; i < count; ++i) {
            auto* consumer = find(id);
            if (!consumer)
                return;
            const auto& view = m_outputs[i];
            ex::OutputInfo info { i, view.source ? 1u : 0u,
                view.source ? view.source->rect.width : 0,
                view.source ? view.source->rect.height : 0,
                view.source ? virtio_gpu::drm_fourcc(view.source->format.format) : 0, 0,
                view.generation };
            queue(*consumer, { ex::encode(info, serial), {} });
        }
        return;
    }
    case ex::Type::Lease:
        handle_lease(c, serial, *m.as<ex::Lease>());
        return;
    case ex::Type::Release: {
        auto release = *m.as<ex::Release>();
        if (!c.leases.count(release.lease)) {
            error(c, serial, ex::ErrorCode::NoSuchLease,
                fmt::format("no lease {} of yours", release.lease));
            return;
        }
        end_lease(c, release.lease, std::nullopt);
        return;
    }
    case ex::Type::Ack: {
        auto ack = *m.as<ex::Ack>();
        auto it = c.leases.find(ack.lease);
        if (it == c.leases.end()) {
            error(c, serial, ex::ErrorCode::NoSuchLease,
                fmt::format("no lease {} of yours", ack.lease));
            return;
        }
        // A generation not shown yet acknowledges only what was shown.
        acknowledged(it->second, std::min(ack.generation, m_outputs[it->second.output].generation));
        return;
    }
    default:
        error(c, serial, ex::ErrorCode::BadMessage,
            fmt::format("{} is the backend's message", ex::type_name(m.header.type)));
        return;
    }
}

void ExportServer::handle_lease(Consumer& c, uint32_t serial, const ex::Lease& request)
{
    uint32_t count = m_options.output_count();
    if (request.output >= count) {
        error(c, serial, ex::ErrorCode::NoSuchOutput,
            fmt::format("output {}: there are {}", request.output, count));
        return;
    }
    if (!(request.plane_type & m_options.plane_types)) {
        error(c, serial, ex::ErrorCode::PlaneType,
            fmt::format("plane type {:#x} is not available here (have {:#x})", request.plane_type,
                m_options.plane_types));
        return;
    }
    if (c.leases.size() >= m_options.max_leases_per_consumer) {
        error(c, serial, ex::ErrorCode::Busy, fmt::format("{} leases already", c.leases.size()));
        return;
    }
    auto kind = ex::LeaseKind(request.kind);
    if (kind == ex::LeaseKind::Exclusive) {
        for (const auto& [id, other] : m_consumers)
            for (const auto& [lease_id, lease] : other->leases)
                if (lease.output == request.output && lease.kind == ex::LeaseKind::Exclusive) {
                    error(c, serial, ex::ErrorCode::Busy,
                        fmt::format(
                            "output {} has an exclusive lease ({})", request.output, lease_id));
                    return;
                }
    }
    Fd eventfd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!eventfd) {
        error(c, serial, ex::ErrorCode::Busy, fmt::format("eventfd: {}", std::strerror(errno)));
        return;
    }
    LeaseState lease;
    lease.id = m_next_lease++;
    lease.output = request.output;
    lease.kind = kind;
    lease.plane_type = request.plane_type;
    lease.eventfd = std::make_shared<const Fd>(std::move(eventfd));
    ++m_stats.leases_granted;
    ex::Leased leased { lease.id, lease.output, request.kind, request.plane_type };
    queue(c, { ex::encode(leased, serial), { lease.eventfd } });
    uint64_t id = c.id;
    auto* consumer = find(id);
    if (!consumer)
        return;
    auto& stored = consumer->leases[lease.id] = std::move(lease);
    send_state(*consumer, stored);
}

void ExportServer::end_lease(Consumer& c, uint32_t lease, std::optional<ex::RevokeReason> why)
{
    if (auto it = c.leases.find(lease); it != c.leases.end())
        release_holds(it->second);
    c.leases.erase(lease);
    release_unleased();
    if (why)
        queue(c, { ex::encode(ex::Revoked { lease, uint32_t(*why) }, 0), {} });
}

Result<void> ExportServer::revoke(uint32_t lease)
{
    for (auto& [id, consumer] : m_consumers)
        if (consumer->leases.count(lease)) {
            end_lease(*consumer, lease, ex::RevokeReason::Control);
            return {};
        }
    return Error::format("no lease {}", lease);
}

std::vector<ExportServer::LeaseInfo> ExportServer::leases() const
{
    std::vector<LeaseInfo> out;
    for (const auto& [id, consumer] : m_consumers)
        for (const auto& [lease_id, lease] : consumer->leases)
            out.push_back({ lease_id, lease.output, lease.kind, lease.plane_type, consumer->name,
                consumer->pid, lease.acked, consumer->queue.size() });
    std::sort(
        out.begin(), out.end(), [](const auto& a, const auto& b) { return a.lease < b.lease; });
    return out;
}

// ---- records ----------------------------------------------------------------------------------

void ExportServer::queue(Consumer& c, Packet packet)
{
    if (c.queue.size() - c.queued_extents >= m_options.max_queued) {
        ++m_stats.evicted;
        drop(c.id, fmt::format("{} records unread: it fell too far behind", c.queue.size()));
        return;
    }
    c.queued_extents += packet.extents ? 1 : 0;
    c.queue.push_back(std::move(packet));
    flush(c);
}

void ExportServer::flush(Consumer& c)
{
    while (!c.queue.empty()) {
        const Packet& front = c.queue.front();
        int fds[ex::MAX_FDS];
        size_t count = 0;
        for (const auto& fd : front.fds)
            fds[count++] = fd->get();
        auto sent = ex::send_packet(c.socket.get(), front.bytes, std::span(fds, count));
        if (!sent) {
            drop(c.id, sent.error().message);
            return;
        }
        if (!*sent) {
            if (!c.writable_watch && m_loop.modify(c.watch, EPOLLIN | EPOLLOUT))
                c.writable_watch = true;
            return;
        }
        c.queued_extents -= c.queue.front().extents ? 1 : 0;
        c.queue.pop_front();
    }
    if (c.writable_watch && m_loop.modify(c.watch, EPOLLIN))
        c.writable_watch = false;
}

void ExportServer::error(Consumer& c, uint32_t serial, ex::ErrorCode code, std::string_view text)
{
    VGPU_LOG_DEBUG("export: consumer {}: {}", c.id, text);
    ex::ErrorReply e { uint32_t(code), serial, {} };
    ex::set_text(e.text, text);
    queue(c, { ex::encode(e, serial), {} });
}

void ExportServer::drop(uint64_t id, std::string_view why)
{
    auto it = m_consumers.find(id);
    if (it == m_consumers.end())
        return;
    VGPU_LOG_INFO("export: consumer {} ({}, pid {}) leaves: {}", id,
        it->second->name.empty() ? "no name" : it->second->name, it->second->pid, why);
    m_loop.unwatch(it->second->watch);
    for (auto& [lease_id, lease] : it->second->leases)
        release_holds(lease);
    // Freed after the callback that dropped it returns: it may be on the stack above us.
    m_dropped.push_back(std::move(it->second));
    m_consumers.erase(it);
    release_unleased();
    if (m_dropped.size() == 1)
        m_loop.post(m_lifetime.guard([this] { m_dropped.clear(); }));
}

bool ExportServer::leased(uint32_t output) const
{
    for (const auto& [id, consumer] : m_consumers)
        for (const auto& [lease_id, lease] : consumer->leases)
            if (lease.output == output)
                return true;
    return false;
}

const std::optional<ExportServer::Frame>& ExportServer::frame_for(const LeaseState& lease) const
{
    auto it = m_outputs.find(lease.output);
    static const std::optional<Frame> none;
    if (it == m_outputs.end())
        return none;
    if (lease.plane_type == ex::PLANE_GUEST_MEMORY && it->second.guest_frame)
        return it->second.guest_frame;
    if (lease.plane_type == ex::PLANE_DMABUF && it->second.dmabuf_frame)
        return it->second.dmabuf_frame;
    return it->second.frame;
}

void ExportServer::release_unleased()
{
    for (auto& [index, view] : m_outputs)
        if ((view.frame || view.guest_frame || view.dmabuf_frame || !view.ring.slots.empty())
            && !leased(index)) {
            view.frame.reset();
            view.guest_frame.reset();
            view.dmabuf_frame.reset();
            view.ring = Ring {};
        }
}

namespace {

Rect united(const Rect& a, const Rect& b)
{
    if (a.width == 0 || a.height == 0)
        return b;
    if (b.width == 0 || b.height == 0)
        return a;
    return bounding(rect32(a), rect32(b));
}

} // namespace

void ExportServer::prepare_frame(uint32_t output, OutputView& view, const Rect& damage)
{
    if (!view.source || !view.source->pixels) {
        view.frame.reset();
        return;
    }
    const auto& source = *view.source;
    const auto& pixels = *source.pixels;
    uint32_t fourcc = virtio_gpu::drm_fourcc(pixels.format().format);
    bool region = false, guest = false, dmabuf = false;
    for (auto [id, lease_id] : leases_on(output)) {
        const auto& lease = m_consumers.at(id)->leases.at(lease_id);
        (lease.plane_type == ex::PLANE_GUEST_MEMORY    ? guest
                : lease.plane_type == ex::PLANE_DMABUF ? dmabuf
                                                       : region)
            = true;
    }
    view.guest_frame.reset();
    view.dmabuf_frame.reset();
    // Zero copy for trusted consumers: the blob's pages, as the guest draws them.
    auto zero_copy = [&](uint32_t plane_type, std::shared_ptr<const Fd> fd, uint32_t extents,
                         uint64_t size) {
        Frame frame;
        frame.key = source.pixels.get();
        frame.keep = source.pixels;
        frame.storage = source.pixels;
        frame.fd = std::move(fd);
        frame.info = { 0, 0, plane_type, fourcc, 0, pixels.width(), pixels.height(),
            pixels.stride(), extents, source.dmabuf_offset, size };
        frame.source = source.rect;
        return frame;
    };
    if (guest && pixels.guest_memory() && source.guest_plane) {
        const auto& plane = *source.guest_plane;
        view.guest_frame = zero_copy(
            ex::PLANE_GUEST_MEMORY, plane.fd, uint32_t(plane.extents.size()), plane.size);
        view.guest_frame->plane = source.guest_plane;
    }
    if (dmabuf && pixels.guest_memory() && source.dmabuf)
        view.dmabuf_frame = zero_copy(
            ex::PLANE_DMABUF, source.dmabuf, 0, uint64_t(source.dmabuf_offset) + pixels.size());
    // Leases whose plane this frame cannot be (a 2D resource, a blob without one) get REGION.
    bool need_region = region || (guest && !view.guest_frame) || (dmabuf && !view.dmabuf_frame);
    if (!need_region) {
        view.frame.reset(); // nobody needs a copy
        return;
    }
    if (!pixels.guest_memory()) {
        if (auto shared = pixels.share()) {
            Frame frame;
            frame.key = source.pixels.get();
            frame.keep = source.pixels;
            frame.storage = source.pixels;
            frame.fd = *shared;
            frame.info = { 0, 0, ex::PLANE_REGION, fourcc, 0, pixels.width(), pixels.height(),
                pixels.stride(), 0, 0, pixels.size() };
            frame.source = source.rect;
            view.frame = std::move(frame);
            view.ring = Ring {};
            return;
        }
    }
    // A copy into the output's ring: blobs (guest memory must not be handed out) and small 2D
    // framebuffers (too small for a mapping of their own).
    uint32_t width = source.rect.width, height = source.rect.height;
    auto& ring = view.ring;
    if (ring.slots.empty() || ring.width != width || ring.height != height
        || ring.fourcc != fourcc) {
        ring = Ring { width, height, fourcc, {}, 0 };
        for (size_t i = 0; i < m_options.ring_slots; ++i) {
            auto slot = std::make_shared<RingSlot>();
            size_t size = size_t(width) * height * 4;
            auto made = [&]() -> Result<void> {
                slot->memfd = TRY(make_memfd("vgpu-export-frame", size));
                auto map = TRY(
                    MemoryMap::map(slot->memfd.get(), size, 0, MemoryMap::Access::ReadWrite));
                TRY(seal_read_only(slot->memfd.get()));
                slot->map = std::move(map);
                return {};
            }();
            if (!made) {
                VGPU_LOG_WARN(
                    "export: output {}: a frame buffer: {}", output, made.error().message);
                ring = Ring {};
                view.frame.reset();
                return;
            }
            slot->stale = Rect { 0, 0, width, height };
            ring.slots.push_back(std::move(slot));
        }
    }
    for (auto& slot : ring.slots)
        slot->stale = united(slot->stale, damage);
    // The next slot, passing over those an exclusive consumer still reads; when it holds all of
    // them, the oldest is written anyway (counted).
    size_t pick = ring.next;
    for (size_t i = 0; i < ring.slots.size(); ++i)
        if (size_t k = (ring.next + i) % ring.slots.size(); !ring.slots[k]->held) {
            pick = k;
            break;
        }
    auto slot = ring.slots[pick];
    if (slot->held) {
        ++m_stats.held_overwritten;
        slot->held.reset();
    }
    ring.next = (pick + 1) % ring.slots.size();
    const Rect& r = slot->stale;
    size_t stride = size_t(width) * 4;
    for (uint32_t y = r.y; y < r.y + r.height; ++y)
        std::memcpy(slot->map.data() + y * stride + size_t(r.x) * 4, source.pixel(r.x, y),
            size_t(r.width) * 4);
    m_stats.bytes_copied += uint64_t(r.width) * r.height * 4;
    slot->stale = Rect {};
    Frame frame;
    frame.key = slot.get();
    frame.fd = std::shared_ptr<const Fd>(slot, &slot->memfd);
    frame.keep = slot;
    frame.slot = slot.get();
    frame.info = { 0, 0, ex::PLANE_REGION, fourcc, 0, width, height, uint32_t(stride), 0, 0,
        stride * height };
    frame.source = Rect { 0, 0, width, height };
    view.frame = std::move(frame);
}

uint32_t ExportServer::buffer_for(Consumer& c, LeaseState& lease)
{
    const auto& frame = frame_for(lease);
    if (!frame)
        return 0;
    auto known = std::find_if(lease.buffers.begin(), lease.buffers.end(),
        [&](const SentBuffer& b) { return b.key == frame->key && !b.alive.expired(); });
    if (known != lease.buffers.end()) {
        SentBuffer b = *known;
        lease.buffers.erase(known);
        lease.buffers.push_back(b);
        return b.id;
    }
    ex::Buffer buffer = frame->info;
    buffer.lease = lease.id;
    buffer.buffer = lease.next_buffer++;
    uint64_t id = c.id;
    uint32_t lease_id = lease.id;
    lease.buffers.push_back(
        { buffer.buffer, frame->key, frame->keep, frame->info.plane_type != ex::PLANE_REGION });
    ++m_stats.buffers_sent;
    auto plane = frame->plane;
    queue(c, { ex::encode(buffer, 0), { frame->fd }, lease_id });
    auto* consumer = find(id);
    if (!consumer || !consumer->leases.count(lease_id))
        return 0;
    // A scattered buffer's extents follow it, 16 to a packet.
    for (size_t first = 0; plane && first < plane->extents.size();
         first += ex::EXTENTS_PER_MESSAGE) {
        ex::Extents e { lease_id, buffer.buffer, uint32_t(first), 0, {} };
        for (size_t i = first; i < plane->extents.size() && e.count < ex::EXTENTS_PER_MESSAGE; ++i)
            e.entry[e.count++] = { plane->extents[i].offset, plane->extents[i].length };
        Packet packet { ex::encode(e, 0), {}, lease_id };
        packet.extents = true;
        queue(*consumer, std::move(packet));
        consumer = find(id);
        if (!consumer || !consumer->leases.count(lease_id))
            return 0;
    }
    auto& l = consumer->leases[lease_id];
    while (l.buffers.size() > m_options.buffers_per_lease) {
        uint32_t old = l.buffers.front().id;
        l.buffers.erase(l.buffers.begin());
        queue(*consumer, { ex::encode(ex::BufferGone { lease_id, old }, 0), {}, lease_id });
        consumer = find(id);
        if (!consumer)
            return 0;
    }
    return buffer.buffer;
}

void ExportServer::retire_gone_buffers()
{
    std::vector<std::pair<uint64_t, uint32_t>> targets;
    for (const auto& [id, consumer] : m_consumers)
        for (const auto& [lease_id, lease] : consumer->leases)
            for (const auto& buffer : lease.buffers)
                if (buffer.alive.expired()) {
                    targets.emplace_back(id, lease_id);
                    break;
                }
    for (auto [id, lease_id] : targets) {
        auto* c = find(id);
        if (!c || !c->leases.count(lease_id))
            continue;
        auto& buffers = c->leases[lease_id].buffers;
        std::vector<uint32_t> gone;
        for (const auto& buffer : buffers)
            if (buffer.alive.expired())
                gone.push_back(buffer.id);
        std::erase_if(buffers, [](const SentBuffer& b) { return b.alive.expired(); });
        for (uint32_t buffer : gone) {
            c = find(id);
            if (!c)
                break;
            queue(*c, { ex::encode(ex::BufferGone { lease_id, buffer }, 0), {}, lease_id });
        }
    }
}

bool ExportServer::hold_frame(Consumer& c, LeaseState& lease)
{
    auto& view = m_outputs[lease.output];
    auto now = std::chrono::steady_clock::now();
    if (lease.unacked_since && now - *lease.unacked_since > m_options.no_ack_timeout) {
        ++m_stats.evicted;
        ++m_stats.no_ack_revoked;
        VGPU_LOG_INFO("export: lease {} ({}): no ACK for {} ms: revoked", lease.id, c.name,
            m_options.no_ack_timeout.count());
        end_lease(c, lease.id, ex::RevokeReason::NoAck);
        return false;
    }
    if (!lease.unacked_since)
        lease.unacked_since = now;
    lease.shown = view.generation;
    const auto& frame = frame_for(lease);
    if (!frame)
        return true;
    if (frame->slot) {
        frame->slot->held = view.generation;
        return true;
    }
    if (!frame->storage)
        return true;
    std::erase_if(lease.holds, [](const auto& h) { return !h->active(); });
    for (auto& hold : lease.holds)
        if (hold->key() == frame->storage.get()) {
            hold->shown_again(view.generation);
            return true;
        }
    lease.holds.push_back(
        std::make_unique<Hold>(frame->storage, view.generation, m_stats.ack_timeouts));
    ++m_stats.holds;
    return true;
}

void ExportServer::acknowledged(LeaseState& lease, uint64_t generation)
{
    lease.acked = std::max(lease.acked, generation);
    if (lease.kind != ex::LeaseKind::Exclusive)
        return;
    // Progress restarts the no-ACK clock; everything shown acknowledged stops it.
    if (lease.acked >= lease.shown)
        lease.unacked_since.reset();
    else
        lease.unacked_since = std::chrono::steady_clock::now();
    std::erase_if(lease.holds, [&](const auto& h) { return h->generation() <= lease.acked; });
    for (auto& slot : m_outputs[lease.output].ring.slots)
        if (slot->held && *slot->held <= lease.acked)
            slot->held.reset();
}

void ExportServer::release_holds(LeaseState& lease)
{
    lease.holds.clear();
    if (lease.kind != ex::LeaseKind::Exclusive)
        return;
    for (auto& slot : m_outputs[lease.output].ring.slots)
        slot->held.reset();
}

void ExportServer::send_state(Consumer& c, LeaseState& lease)
{
    const auto& view = m_outputs[lease.output];
    lease.enabled = view.source.has_value();
    lease.width = view.source ? view.source->rect.width : 0;
    lease.height = view.source ? view.source->rect.height : 0;
    uint64_t id = c.id;
    uint32_t lease_id = lease.id;
    queue(c,
        { ex::encode(ex::Mode { lease.id, lease.output, lease.enabled ? 1u : 0u, lease.width,
                         lease.height, 0 },
              0),
            {}, lease.id });
    auto* consumer = find(id);
    if (!consumer || !consumer->leases.count(lease_id) || !view.source)
        return;
    Rect full { 0, 0, view.source->rect.width, view.source->rect.height };
    if (!frame_for(consumer->leases[lease_id]))
        prepare_frame(lease.output, m_outputs[lease.output], full);
    send_flip(*consumer, consumer->leases[lease_id], full, true);
    if (view.cursor.image)
        if (auto* again = find(id); again && again->leases.count(lease_id))
            send_cursor(*again, again->leases[lease_id], false);
}

void ExportServer::send_flip(Consumer& c, LeaseState& lease, const Rect& damage, bool whole)
{
    const auto& view = m_outputs[lease.output];
    if (!view.source)
        return;
    uint64_t id = c.id;
    uint32_t lease_id = lease.id;
    uint32_t buffer = buffer_for(c, lease);
    auto* consumer = find(id);
    if (!consumer || !consumer->leases.count(lease_id))
        return;
    auto& l = consumer->leases[lease_id];
    Rect full { 0, 0, view.source->rect.width, view.source->rect.height };
    const auto& frame = frame_for(l);
    Rect source = frame ? frame->source : view.source->rect;
    // The damage is since this lease's previous FLIP: whole after a change of picture, else the
    // flush's, even when the buffer is another ring slot (each holds the whole current picture,
    // and the consumer's copy holds the previous one).
    Rect shown = whole || l.picture_epoch != view.picture_epoch ? full : damage;
    l.picture_epoch = view.picture_epoch;
    if (l.kind == ex::LeaseKind::Exclusive && !hold_frame(*consumer, l))
        return;
    uint64_t signalled = signal(*l.eventfd);
    // A consumer that has not read its last FLIP yet gets this one merged into it, as long as
    // nothing of this lease was queued after it.
    for (auto it = consumer->queue.rbegin(); it != consumer->queue.rend(); ++it) {
        if (it->lease != lease_id)
            continue;
        if (!it->flip)
            break;
        ex::Flip flip;
        std::memcpy(&flip, it->bytes.data() + sizeof(ex::Header), sizeof(flip));
        flip.buffer = buffer;
        flip.generation = view.generation;
        flip.covers += 1;
        flip.time_ns = signalled;
        flip.source = rect32(source);
        add_damage(flip, rect32(shown));
        std::memcpy(it->bytes.data() + sizeof(ex::Header), &flip, sizeof(flip));
        ++m_stats.flips_coalesced;
        return;
    }
    ex::Flip flip {};
    flip.lease = lease_id;
    flip.buffer = buffer;
    flip.generation = view.generation;
    flip.covers = 1;
    flip.rects = 1;
    flip.source = rect32(source);
    flip.damage[0] = rect32(shown);
    flip.time_ns = signalled;
    ++m_stats.flips_sent;
    queue(*consumer, { ex::encode(flip, 0), {}, lease_id, true });
}

// ---- the display's events --------------------------------------------------------------------

void ExportServer::output_changed(const Output& output)
{
    retire_gone_buffers();
    auto& view = m_outputs[output.index];
    view.source = output.source;
    view.generation = output.generation;
    // Another framebuffer or rectangle: the next flush decides how it is handed out, and every
    // ring slot is stale as a whole.
    view.frame.reset();
    view.guest_frame.reset();
    view.dmabuf_frame.reset();
    ++view.picture_epoch;
    for (auto& slot : view.ring.slots)
        slot->stale = output.full();
    std::vector<uint64_t> ids;
    ids.reserve(m_consumers.size());
    for (const auto& [id, consumer] : m_consumers)
        ids.push_back(id);
    for (uint64_t id : ids) {
        auto* c = find(id);
        if (!c)
            continue;
        std::vector<uint32_t> affected;
        for (const auto& [lease_id, lease] : c->leases)
            if (lease.output == output.index
                && (lease.enabled != output.enabled() || lease.width != output.width()
                    || lease.height != output.height()))
                affected.push_back(lease_id);
        for (uint32_t lease_id : affected) {
            c = find(id);
            if (!c || !c->leases.count(lease_id))
                break;
            auto& lease = c->leases[lease_id];
            lease.enabled = output.enabled();
            lease.width = output.width();
            lease.height = output.height();
            queue(*c,
                { ex::encode(ex::Mode { lease_id, output.index, lease.enabled ? 1u : 0u,
                                 lease.width, lease.height, 0 },
                      0),
                    {}, lease_id });
        }
    }
}

void ExportServer::output_damaged(const Output& output, Rect damage)
{
    retire_gone_buffers();
    auto& view = m_outputs[output.index];
    view.source = output.source;
    view.generation = output.generation;
    auto targets = leases_on(output.index);
    if (targets.empty())
        return; // nothing is copied while nobody is attached
    prepare_frame(output.index, view, damage);
    for (auto [id, lease_id] : targets) {
        auto* c = find(id);
        if (!c || !c->leases.count(lease_id))
            continue;
        send_flip(*c, c->leases[lease_id], damage, false);
    }
}

std::vector<std::pair<uint64_t, uint32_t>> ExportServer::leases_on(uint32_t output) const
{
    std::vector<std::pair<uint64_t, uint32_t>> out;
    for (const auto& [id, consumer] : m_consumers)
        for (const auto& [lease_id, lease] : consumer->leases)
            if (lease.output == output)
                out.emplace_back(id, lease_id);
    return out;
}

void ExportServer::cursor_changed(uint32_t scanout, const CursorState& cursor, bool moved_only)
{
    auto& view = m_outputs[scanout].cursor;
    view.x = cursor.x;
    view.y = cursor.y;
    if (!moved_only) {
        view.image = cursor.image;
        view.fd.reset(); // a new image is a new buffer
        ++view.serial;
    }
    if (moved_only && !view.image)
        return; // a hidden cursor moved: nothing to see
    for (auto [id, lease_id] : leases_on(scanout))
        if (auto* c = find(id); c && c->leases.count(lease_id))
            send_cursor(*c, c->leases[lease_id], moved_only);
}

void ExportServer::send_cursor(Consumer& c, LeaseState& lease, bool moved_only)
{
    auto& view = m_outputs[lease.output].cursor;
    const size_t size = size_t(virtio_gpu::CURSOR_SIZE) * virtio_gpu::CURSOR_SIZE * 4;
    if (view.image && !view.fd) {
        auto made = [&]() -> Result<Fd> {
            Fd fd = TRY(make_memfd("vgpu-export-cursor", size));
            const auto& argb = view.image->argb;
            if (argb.size() * 4 != size
                || ::pwrite(fd.get(), argb.data(), size, 0) != ssize_t(size))
                return Error::format("writing the cursor image: {}", std::strerror(errno));
            TRY(seal_read_only(fd.get()));
            return fd;
        }();
        if (!made) {
            VGPU_LOG_WARN("export: output {}: cursor: {}", lease.output, made.error().message);
            return;
        }
        view.fd = std::make_shared<const Fd>(std::move(made.value()));
    }
    uint64_t id = c.id;
    uint32_t lease_id = lease.id;
    uint32_t old = 0;
    if (!view.image) {
        old = std::exchange(lease.cursor_buffer, 0);
        lease.cursor_image = 0;
    } else if (lease.cursor_image != view.serial) {
        old = lease.cursor_buffer;
        lease.cursor_buffer = lease.next_buffer++;
        lease.cursor_image = view.serial;
        uint32_t stride = virtio_gpu::CURSOR_SIZE * 4;
        ex::Buffer buffer { lease_id, lease.cursor_buffer, ex::PLANE_REGION,
            virtio_gpu::drm_fourcc(virtio_gpu::Format::B8G8R8A8Unorm), 0, virtio_gpu::CURSOR_SIZE,
            virtio_gpu::CURSOR_SIZE, stride, 0, 0, size };
        ++m_stats.buffers_sent;
        queue(c, { ex::encode(buffer, 0), { view.fd }, lease_id });
    }
    auto* consumer = find(id);
    if (!consumer || !consumer->leases.count(lease_id))
        return;
    auto& l = consumer->leases[lease_id];
    ex::Cursor record { lease_id, l.cursor_buffer, view.x, view.y,
        view.image ? view.image->hot_x : 0, view.image ? view.image->hot_y : 0,
        moved_only ? 1u : 0u, 0 };
    // A move that the consumer has not read yet is replaced by the next one.
    if (moved_only && !consumer->queue.empty() && consumer->queue.back().cursor_move
        && consumer->queue.back().lease == lease_id) {
        std::memcpy(
            consumer->queue.back().bytes.data() + sizeof(ex::Header), &record, sizeof(record));
        ++m_stats.cursor_moves_coalesced;
        return;
    }
    Packet packet { ex::encode(record, 0), {}, lease_id };
    packet.cursor_move = moved_only;
    queue(*consumer, std::move(packet));
    if (old)
        if (auto* again = find(id); again && again->leases.count(lease_id))
            queue(*again, { ex::encode(ex::BufferGone { lease_id, old }, 0), {}, lease_id });
}

void ExportServer::guest_memory_gone(bool frontend_gone)
{
    for (auto& [index, view] : m_outputs) {
        view.guest_frame.reset();
        view.dmabuf_frame.reset();
    }
    auto reason = frontend_gone ? ex::RevokeReason::FrontendGone : ex::RevokeReason::DeviceReset;
    std::vector<std::pair<uint64_t, uint32_t>> targets;
    for (const auto& [id, consumer] : m_consumers)
        for (const auto& [lease_id, lease] : consumer->leases)
            if (lease.plane_type == ex::PLANE_GUEST_MEMORY || lease.plane_type == ex::PLANE_DMABUF)
                targets.emplace_back(id, lease_id);
    for (auto [id, lease_id] : targets) {
        auto* c = find(id);
        if (!c || !c->leases.count(lease_id))
            continue;
        std::vector<uint32_t> gone;
        for (const auto& b : c->leases[lease_id].buffers)
            if (b.guest)
                gone.push_back(b.id);
        for (uint32_t buffer : gone)
            if (c = find(id); c)
                queue(*c, { ex::encode(ex::BufferGone { lease_id, buffer }, 0), {}, lease_id });
        if (c = find(id); c && c->leases.count(lease_id))
            end_lease(*c, lease_id, reason);
    }
}

void ExportServer::crc_entry(uint32_t output, uint64_t generation, uint32_t crc)
{
    // A CRC computed at once (a small frame) reaches us from CRC capture's own sink call,
    // before the display has told us of the flush: the record waits until it has, so that it
    // follows its FLIP.
    if (m_outputs[output].generation < generation) {
        m_loop.post(m_lifetime.guard(
            [this, output, generation, crc] { send_crc(output, generation, crc); }));
        return;
    }
    send_crc(output, generation, crc);
}

void ExportServer::send_crc(uint32_t output, uint64_t generation, uint32_t crc)
{
    for (auto [id, lease_id] : leases_on(output))
        if (auto* c = find(id); c && c->leases.count(lease_id))
            queue(*c, { ex::encode(ex::Crc { lease_id, crc, generation }, 0), {}, lease_id });
}

} // namespace vgpu::display
