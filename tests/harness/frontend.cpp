#include "harness/frontend.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "virtio/features.h"
#include "virtio_gpu/wire.h"

namespace vgpu::harness {

using vhost::Header;
using vhost::Request;

Frontend Frontend::connect(const std::string& socket_path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0)
            return Frontend(std::move(s));
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("cannot connect to " + socket_path);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

Frontend::Frontend(Fd socket)
    : m_socket(std::move(socket))
{
}

void Frontend::send_bytes(std::span<const std::byte> bytes, std::span<const int> fds)
{
    iovec iov { const_cast<std::byte*>(bytes.data()), bytes.size() };
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds.size(), 1)));
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    // A send to a backend that already closed is a test outcome, not a harness failure.
    (void)::sendmsg(m_socket.get(), &msg, MSG_NOSIGNAL);
}

void Frontend::send_raw(
    const Header& header, std::span<const std::byte> payload, std::span<const int> fds)
{
    std::vector<std::byte> bytes(sizeof(header) + payload.size());
    std::memcpy(bytes.data(), &header, sizeof(header));
    if (!payload.empty())
        std::memcpy(bytes.data() + sizeof(header), payload.data(), payload.size());
    send_bytes(bytes, fds);
}

namespace {
bool recv_exact(int fd, std::byte* out, size_t size, std::chrono::steady_clock::time_point deadline)
{
    size_t done = 0;
    while (done < size) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p { fd, POLLIN, 0 };
        if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0)
            return false;
        ssize_t n = ::recv(fd, out + done, size - done, 0);
        if (n <= 0)
            return false;
        done += size_t(n);
    }
    return true;
}
} // namespace

std::optional<RawReply> Frontend::read_reply(std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    RawReply reply {};
    if (!recv_exact(
            m_socket.get(), reinterpret_cast<std::byte*>(&reply.header), sizeof(Header), deadline))
        return std::nullopt;
    reply.payload.resize(reply.header.size);
    if (reply.header.size
        && !recv_exact(m_socket.get(), reply.payload.data(), reply.header.size, deadline))
        return std::nullopt;
    return reply;
}

bool Frontend::closed_by_backend(std::chrono::milliseconds timeout)
{
    pollfd p { m_socket.get(), POLLIN, 0 };
    if (::poll(&p, 1, int(timeout.count())) <= 0)
        return false;
    std::byte b;
    // ECONNRESET: the backend closed with bytes of ours still unread in its socket (Linux's
    // unix sockets then reset the peer), as when it cuts off a message arriving in pieces.
    ssize_t n = ::recv(m_socket.get(), &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::optional<uint64_t> Frontend::request(
    Request r, std::span<const std::byte> payload, std::span<const int> fds, bool need_reply)
{
    Header header { uint32_t(r), vhost::VERSION | (need_reply ? vhost::FLAG_NEED_REPLY : 0),
        uint32_t(payload.size()) };
    send_raw(header, payload, fds);
    if (!need_reply)
        return uint64_t(0);
    auto reply = read_reply();
    if (!reply || reply->header.request != uint32_t(r) || reply->payload.size() != 8)
        return std::nullopt;
    uint64_t value;
    std::memcpy(&value, reply->payload.data(), 8);
    return value;
}

std::optional<uint64_t> Frontend::get_u64(Request r)
{
    send_raw(Header { uint32_t(r), vhost::VERSION, 0 }, {});
    auto reply = read_reply();
    if (!reply || reply->header.request != uint32_t(r) || reply->payload.size() != 8
        || reply->header.flags != (vhost::VERSION | vhost::FLAG_REPLY))
        return std::nullopt;
    uint64_t value;
    std::memcpy(&value, reply->payload.data(), 8);
    return value;
}

// ---- QemuSession ------------------------------------------------------------------------------

QemuSession::QemuSession(const std::string& socket_path, SessionOptions options)
    : m_options(options)
    , m_frontend(Frontend::connect(socket_path))
    , m_ram(options.ram_low, options.ram_high)
{
}

QemuSession::QemuSession(Fd connected, SessionOptions options)
    : m_options(options)
    , m_frontend(std::move(connected))
    , m_ram(options.ram_low, options.ram_high)
{
}

void QemuSession::start()
{
    qemu_start();
    driver_ok();
}

namespace {
void require(bool ok, const char* what)
{
    if (!ok)
        throw std::runtime_error(std::string("bring-up step failed: ") + what);
}
constexpr uint64_t bit(unsigned b) { return uint64_t(1) << b; }
} // namespace

void QemuSession::qemu_start()
{
    auto& f = m_frontend;
    auto features = f.get_u64(Request::GetFeatures);
    require(features.has_value(), "GET_FEATURES");
    m_offered_features = *features;
    require(m_offered_features & bit(vhost::F_PROTOCOL_FEATURES), "PROTOCOL_FEATURES offered");
    auto protocol = f.get_u64(Request::GetProtocolFeatures);
    require(protocol.has_value(), "GET_PROTOCOL_FEATURES");
    // QEMU acks what it knows of what was offered.
    uint64_t wanted = bit(vhost::PF_MQ) | bit(vhost::PF_REPLY_ACK) | bit(vhost::PF_BACKEND_REQ)
        | bit(vhost::PF_CONFIG) | bit(vhost::PF_RESET_DEVICE) | bit(vhost::PF_CONFIGURE_MEM_SLOTS)
        | bit(vhost::PF_STATUS) | bit(vhost::PF_LOG_SHMFD) | bit(vhost::PF_INFLIGHT_SHMFD);
    f.m_protocol_features = *protocol & wanted;
    require(f.request_obj(Request::SetProtocolFeatures, f.m_protocol_features).has_value(),
        "SET_PROTOCOL_FEATURES");
    require(f.get_u64(Request::GetQueueNum) == 2u, "GET_QUEUE_NUM == 2");
    if (f.m_protocol_features & bit(vhost::PF_CONFIGURE_MEM_SLOTS))
        require(f.get_u64(Request::GetMaxMemSlots).value_or(0) >= 2, "GET_MAX_MEM_SLOTS");
    if (f.m_protocol_features & bit(vhost::PF_BACKEND_REQ)) {
        int pair[2];
        require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
        m_backend_channel = Fd(pair[0]);
        Fd theirs(pair[1]);
        int fd = theirs.get();
        require(f.request(Request::SetBackendReqFd, {}, std::span(&fd, 1), true) == 0u,
            "SET_BACKEND_REQ_FD");
    }
    require(f.request(Request::SetOwner).has_value(), "SET_OWNER");
    require(f.get_u64(Request::GetFeatures).has_value(), "GET_FEATURES again");
    m_control = std::make_unique<DriverQueue>(m_ram, m_options.queue_size);
    m_cursor = std::make_unique<DriverQueue>(m_ram, m_options.queue_size);
    for (uint32_t i = 0; i < 2; ++i) {
        DriverQueue& q = i == 0 ? *m_control : *m_cursor;
        int call = q.call().get();
        f.request_obj(Request::SetVringCall, uint64_t(i), std::span(&call, 1));
        int err_fd = q.call().get(); // any eventfd: we do not watch errors
        f.request_obj(Request::SetVringErr, uint64_t(i), std::span(&err_fd, 1));
    }
}

void QemuSession::driver_ok()
{
    auto& f = m_frontend;
    // GET_CONFIG twice, 16 bytes of virtio_gpu_config each.
    for (int i = 0; i < 2; ++i) {
        std::byte payload[sizeof(vhost::ConfigHeader) + sizeof(virtio_gpu::Config)] {};
        vhost::ConfigHeader h { 0, sizeof(virtio_gpu::Config), 0 };
        std::memcpy(payload, &h, sizeof(h));
        f.send_raw(
            Header { uint32_t(Request::GetConfig), vhost::VERSION, sizeof(payload) }, payload);
        auto reply = f.read_reply();
        require(reply && reply->payload.size() == sizeof(payload), "GET_CONFIG");
    }
    if (m_options.with_display_socket) {
        m_display = std::make_unique<DisplayPeer>(m_options.display_protocol_features);
        Fd end = m_display->take_backend_end();
        int fd = end.get();
        require(
            f.request(Request::GpuSetSocket, {}, std::span(&fd, 1)).has_value(), "GPU_SET_SOCKET");
    }
    {
        int call = m_control->call().get();
        f.request_obj(Request::SetVringCall, uint64_t(0), std::span(&call, 1));
    }
    constexpr uint64_t device_bits = (uint64_t(1) << 24) - 1;
    uint64_t ack = m_offered_features & ~m_options.features_to_clear
        & ~(device_bits & ~m_options.device_features_passed);
    if (m_options.ack_unoffered_ring_reset)
        ack |= bit(virtio::F_RING_RESET);
    m_acked_features = ack;
    f.request_obj(Request::SetFeatures, ack);
    setup_memory();
    setup_rings(0);
}

void QemuSession::reset_and_reinit(Request reset)
{
    auto& f = m_frontend;
    if (reset == Request::SetStatus)
        require(f.request_obj(Request::SetStatus, uint64_t(0), {}, true) == 0u, "SET_STATUS 0");
    else
        require(f.request(reset, {}, {}, true) == 0u, "device reset");
    m_control = std::make_unique<DriverQueue>(m_ram, m_options.queue_size);
    m_cursor = std::make_unique<DriverQueue>(m_ram, m_options.queue_size);
    for (uint32_t i = 0; i < 2; ++i) {
        DriverQueue& q = i == 0 ? *m_control : *m_cursor;
        int call = q.call().get();
        f.request_obj(Request::SetVringCall, uint64_t(i), std::span(&call, 1));
    }
    f.request_obj(Request::SetFeatures, m_acked_features);
    setup_rings(0);
}

void QemuSession::setup_memory()
{
    auto& f = m_frontend;
    auto regions = m_ram.regions();
    if (f.m_protocol_features & bit(vhost::PF_CONFIGURE_MEM_SLOTS)) {
        m_used_add_mem_reg = true;
        for (const auto& r : regions) {
            vhost::SingleMemoryRegion m { 0,
                { r.guest_phys_addr, r.memory_size, r.userspace_addr, r.mmap_offset } };
            int fd = m_ram.fd().get();
            require(
                f.request_obj(Request::AddMemReg, m, std::span(&fd, 1), true) == 0u, "ADD_MEM_REG");
        }
        return;
    }
    std::vector<std::byte> payload(
        sizeof(vhost::MemoryTableHeader) + regions.size() * sizeof(vhost::MemoryRegion));
    vhost::MemoryTableHeader h { uint32_t(regions.size()), 0 };
    std::memcpy(payload.data(), &h, sizeof(h));
    std::vector<int> fds;
    for (size_t i = 0; i < regions.size(); ++i) {
        const auto& r = regions[i];
        vhost::MemoryRegion m { r.guest_phys_addr, r.memory_size, r.userspace_addr, r.mmap_offset };
        std::memcpy(payload.data() + sizeof(h) + i * sizeof(m), &m, sizeof(m));
        fds.push_back(m_ram.fd().get());
    }
    bool ack = f.m_protocol_features & bit(vhost::PF_REPLY_ACK);
    auto r = f.request(Request::SetMemTable, payload, fds, ack);
    require(r == 0u, "SET_MEM_TABLE");
}

void QemuSession::setup_ring(uint32_t index, DriverQueue& q, uint16_t base)
{
    auto& f = m_frontend;
    f.request_obj(Request::SetVringNum, vhost::VringState { index, q.size() });
    f.request_obj(Request::SetVringBase, vhost::VringState { index, base });
    vhost::VringAddr addr { index, 0, m_ram.frontend_va(q.desc_gpa()),
        m_ram.frontend_va(q.used_gpa()), m_ram.frontend_va(q.avail_gpa()), 0 };
    f.request_obj(Request::SetVringAddr, addr);
    int kick = q.kick().get();
    f.request_obj(Request::SetVringKick, uint64_t(index), std::span(&kick, 1));
}

void QemuSession::setup_rings(uint16_t base)
{
    auto& f = m_frontend;
    setup_ring(0, *m_control, base);
    setup_ring(1, *m_cursor, base);
    for (uint32_t i = 0; i < 2; ++i)
        require(f.request_obj(Request::SetVringEnable, vhost::VringState { i, 1 }, {}, true) == 0u,
            "SET_VRING_ENABLE");
    if (m_options.swap_call_fds) {
        for (uint32_t i = 0; i < 2; ++i) {
            DriverQueue& q = i == 0 ? *m_control : *m_cursor;
            q.replace_call();
            int call = q.call().get();
            f.request_obj(Request::SetVringCall, uint64_t(i), std::span(&call, 1));
        }
    }
}

std::optional<std::vector<std::byte>> QemuSession::control_round_trip(
    std::span<const std::byte> request, uint32_t response_size, bool indirect)
{
    uint64_t req_gpa = m_ram.alloc(request.size());
    m_ram.write(req_gpa, request);
    uint64_t resp_gpa = m_ram.alloc(response_size);
    m_control->add(
        { { req_gpa, uint32_t(request.size()), false }, { resp_gpa, response_size, true } },
        indirect);
    m_control->notify_kick();
    auto used = m_control->wait_used();
    if (!used)
        return std::nullopt;
    std::vector<std::byte> response(std::min(used->length, response_size));
    m_ram.read(resp_gpa, response);
    return response;
}

std::optional<UsedElement> QemuSession::cursor_round_trip(std::span<const std::byte> request)
{
    uint64_t gpa = m_ram.alloc(request.size());
    m_ram.write(gpa, request);
    m_cursor->add({ { gpa, uint32_t(request.size()), false } });
    m_cursor->notify_kick();
    return m_cursor->wait_used();
}

} // namespace vgpu::harness
