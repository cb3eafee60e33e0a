// The backend side of vhost-user: accepts a frontend (QEMU, crosvm, the test harness), answers its
// requests with one handler each, owns guest memory and the virtqueues, and starts and stops the
// queues the device drains. One frontend at a time; when it goes away the device is reset and,
// on a listening socket, the next frontend is accepted.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/result.h"
#include "vhost/connection.h"
#include "vhost/message.h"
#include "virtio/device.h"
#include "virtio/guest_memory.h"
#include "virtio/split_queue.h"

namespace vgpu::vhost {

struct BackendOptions {
    // Offer CONFIGURE_MEM_SLOTS (ADD_MEM_REG/REM_MEM_REG). Without it a frontend sends
    // SET_MEM_TABLE: the switch lets a real QEMU exercise that path too.
    bool offer_configure_mem_slots = true;
    // The mode of the --socket-path socket file.
    mode_t socket_mode = 0600;
};

struct BackendStats {
    uint64_t connections = 0;
    uint64_t requests = 0;
    uint64_t failed_requests = 0; // decoded or handled with an error
    uint64_t protocol_errors = 0; // the connection was closed for it
    uint64_t masked_feature_bits = 0; // acked bits we never offered, last SET_FEATURES
    uint64_t memory_faults = 0; // guest memory truncated under its mapping (SIGBUS recovered)
};

class BackendServer {
public:
    // How long a frontend message that has started arriving may take to arrive whole.
    static constexpr std::chrono::milliseconds message_deadline { 2000 };

    static Result<std::unique_ptr<BackendServer>> create(
        EventLoop& loop, virtio::Device& device, BackendOptions options);
    ~BackendServer();

    // Listens on a unix socket path (replacing a stale socket file) and serves frontends one
    // after another.
    Result<void> listen(const std::string& path);
    // Serves one already-connected socket (--fd); `on_disconnect` runs when it goes away.
    Result<void> serve_connected(Fd socket);
    void set_disconnect_callback(std::function<void()> callback)
    {
        m_on_disconnect = std::move(callback);
    }

    // Tells the frontend that the device configuration changed (CONFIG_CHANGE_MSG on the backend
    // channel), when the channel and the CONFIG protocol feature are there.
    void notify_config_changed();

    bool connected() const { return m_connection.has_value(); }
    const BackendStats& stats() const { return m_stats; }
    const virtio::GuestMemory& memory() const { return m_memory; }
    const virtio::SplitQueue& queue(size_t index) const { return *m_queues[index]; }
    uint64_t offered_features() const;
    uint64_t offered_protocol_features() const;

private:
    BackendServer(EventLoop& loop, virtio::Device& device, BackendOptions options);

    // What a handler answers: a payload for requests with a reply, nothing for the others
    // (they get a REPLY_ACK of 0 when the frontend asked for one).
    using Reply = std::optional<std::vector<std::byte>>;
    struct Context {
        Message& message;
    };

    void watch_listener();
    void on_listen_ready();
    void on_connection_ready(uint32_t events);
    void cancel_message_deadline();
    void on_memory_fault();
    void accept_connection(Fd socket);
    void disconnect(std::string_view why);
    void handle_message(Message& message);
    Result<void> send_reply(const Header& request, std::span<const std::byte> payload);

    Reply handle(const req::GetFeatures&, Context&);
    Result<Reply> handle(const req::SetFeatures&, Context&);
    Reply handle(const req::SetOwner&, Context&);
    Reply handle(const req::ResetOwner&, Context&);
    Result<Reply> handle(const req::SetMemTable&, Context&);
    Result<Reply> handle(const req::SetVringNum&, Context&);
    Result<Reply> handle(const req::SetVringAddr&, Context&);
    Result<Reply> handle(const req::SetVringBase&, Context&);
    Result<Reply> handle(const req::GetVringBase&, Context&);
    Result<Reply> handle(const req::SetVringFd&, Context&);
    Reply handle(const req::GetProtocolFeatures&, Context&);
    Reply handle(const req::SetProtocolFeatures&, Context&);
    Reply handle(const req::GetQueueNum&, Context&);
    Result<Reply> handle(const req::SetVringEnable&, Context&);
    Result<Reply> handle(const req::SetBackendReqFd&, Context&);
    Result<Reply> handle(const req::GetConfig&, Context&);
    Result<Reply> handle(const req::SetConfig&, Context&);
    Result<Reply> handle(const req::GpuSetSocket&, Context&);
    Reply handle(const req::ResetDevice&, Context&);
    Reply handle(const req::GetMaxMemSlots&, Context&);
    Result<Reply> handle(const req::AddMemReg&, Context&);
    Result<Reply> handle(const req::RemMemReg&, Context&);
    Reply handle(const req::SetStatus&, Context&);
    Reply handle(const req::GetStatus&, Context&);

    Result<virtio::SplitQueue*> queue_for(uint32_t index, std::string_view request);
    bool protocol_feature(unsigned bit) const { return m_protocol_features & (uint64_t(1) << bit); }
    // Starts `queue` when it is complete (size, addresses, kick, memory, enabled). Fails when it
    // is complete but its rings are not in guest memory.
    Result<void> maybe_start(virtio::SplitQueue& queue);
    // Reset: the rings are being dropped or are unreachable, nothing more is written to them.
    enum class StopKind {
        AnswerHeldBuffers,
        Reset
    };
    void stop_queue(virtio::SplitQueue& queue, StopKind kind = StopKind::AnswerHeldBuffers);
    void on_kick(virtio::SplitQueue& queue);
    // Guest memory changed: resolve the rings of running queues again.
    void memory_changed();
    // virtio reset: queues stopped and forgotten, device state dropped. Memory and protocol
    // features are connection state and stay.
    void reset_device();

    EventLoop& m_loop;
    virtio::Device& m_device;
    BackendOptions m_options;
    Fd m_listen_socket;
    std::string m_listen_path;
    std::optional<EventLoop::WatchId> m_listen_watch;
    std::optional<EventLoop::WatchId> m_listen_retry; // accept failed: listen again later
    std::optional<Connection> m_connection;
    std::optional<EventLoop::WatchId> m_connection_watch;
    std::optional<EventLoop::WatchId> m_message_deadline;
    std::optional<EventLoop::WatchId> m_fault_watch;
    std::optional<Connection> m_backend_channel;
    std::function<void()> m_on_disconnect;

    virtio::GuestMemory m_memory;
    std::vector<std::unique_ptr<virtio::SplitQueue>> m_queues;
    std::vector<std::optional<EventLoop::WatchId>> m_kick_watches;
    uint64_t m_features = 0;
    uint64_t m_protocol_features = 0;
    bool m_features_set = false;
    uint8_t m_status = 0;
    BackendStats m_stats;
};

} // namespace vgpu::vhost
