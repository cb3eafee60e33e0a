// A vhost-user frontend that speaks to the real backend over a real unix socket, making the same
// feature-dependent choices QEMU 10's vhost-user-gpu-pci makes (ADD_MEM_REG when
// CONFIGURE_MEM_SLOTS is offered, SET_MEM_TABLE otherwise; REPLY_ACK where QEMU asks for it).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "harness/display_peer.h"
#include "harness/driver_queue.h"
#include "harness/guest_ram.h"
#include "vhost/wire.h"

namespace vgpu::harness {

struct RawReply {
    vhost::Header header;
    std::vector<std::byte> payload;
};

class Frontend {
public:
    static Frontend connect(const std::string& socket_path);
    explicit Frontend(Fd socket);

    // Sends one message as given (for malformed-message tests: any header, payload, fds).
    void send_raw(const vhost::Header& header, std::span<const std::byte> payload,
        std::span<const int> fds = {});
    void send_bytes(std::span<const std::byte> bytes, std::span<const int> fds = {});
    // Reads one reply; nullopt if the backend closed the connection (or on timeout).
    std::optional<RawReply> read_reply(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    // True when the backend has closed its end (EOF within `timeout`).
    bool closed_by_backend(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

    // Typed requests. need_reply sets NEED_REPLY; the ack (0 = success) is returned when the
    // backend answers.
    std::optional<uint64_t> request(vhost::Request request, std::span<const std::byte> payload = {},
        std::span<const int> fds = {}, bool need_reply = false);
    template <typename T>
    std::optional<uint64_t> request_obj(
        vhost::Request r, const T& payload, std::span<const int> fds = {}, bool need_reply = false)
    {
        return request(r, std::as_bytes(std::span(&payload, 1)), fds, need_reply);
    }
    // GET_* requests with a u64 answer.
    std::optional<uint64_t> get_u64(vhost::Request request);

    uint64_t get_features() { return get_u64(vhost::Request::GetFeatures).value_or(0); }
    uint64_t protocol_features() const { return m_protocol_features; }
    const Fd& socket() const { return m_socket; }

private:
    Fd m_socket;
    uint64_t m_protocol_features = 0;
    friend class QemuSession;
};

struct SessionOptions {
    uint16_t queue_size = 256;
    // QEMU 10 acks bit 40 (RING_RESET) without an offer; keep that by default.
    bool ack_unoffered_ring_reset = true;
    bool with_display_socket = true;
    // What the display peer answers GET_PROTOCOL_FEATURES with (QEMU 10: EDID | DMABUF2).
    uint64_t display_protocol_features = 0x3;
    bool swap_call_fds = true;
    // Drop transport features from what we ack (e.g. to test a driver without INDIRECT_DESC).
    uint64_t features_to_clear = 0;
    // The device features (bits 0..23) the guest gets to ack: QEMU 10's vhost-user-gpu-pci
    // passes VIRGL, EDID and RESOURCE_UUID only, never RESOURCE_BLOB; a frontend that passes
    // every feature through (crosvm's) is ~0.
    uint64_t device_features_passed = 0x7;
    // Guest RAM: low memory at GPA 0 and a second region at 4 GiB, as QEMU's pc machine has.
    uint64_t ram_low = 32 << 20;
    uint64_t ram_high = 16 << 20;
};

// The recorded QEMU 10 bring-up (shared/PROTOCOL.md), then a driver on both queues.
class QemuSession {
public:
    QemuSession(const std::string& socket_path, SessionOptions options = {});
    explicit QemuSession(Fd connected, SessionOptions options = {});

    // 1. QEMU start: features, protocol features, queue num, mem slots, backend channel, owner,
    //    call and err fds. 2. Driver load and DRIVER_OK: config, display socket, features,
    //    memory, rings, enable, call fd swap.
    void start();
    void qemu_start();
    void driver_ok();

    Frontend& frontend() { return m_frontend; }
    GuestRam& ram() { return m_ram; }
    DriverQueue& control() { return *m_control; }
    DriverQueue& cursor() { return *m_cursor; }
    DisplayPeer* display() { return m_display.get(); }
    const Fd& backend_channel() const { return m_backend_channel; }
    uint64_t offered_features() const { return m_offered_features; }
    uint64_t acked_features() const { return m_acked_features; }
    bool used_add_mem_reg() const { return m_used_add_mem_reg; }

    // Sends `request` on the control queue with `response_size` bytes of writable space and
    // waits for the used entry; returns the written bytes (empty on timeout: check with
    // last_used()).
    std::optional<std::vector<std::byte>> control_round_trip(
        std::span<const std::byte> request, uint32_t response_size = 64, bool indirect = false);
    // Sends a cursor command and waits for its used entry.
    std::optional<UsedElement> cursor_round_trip(std::span<const std::byte> request);

    // Sends the memory table again (ADD_MEM_REG or SET_MEM_TABLE), as on memory hotplug.
    void setup_memory();
    // What a driver does after a device reset: fresh rings, features again, queues set up.
    // `reset` is RESET_DEVICE or SET_STATUS (with 0).
    void reset_and_reinit(vhost::Request reset = vhost::Request::ResetDevice);
    void setup_rings(uint16_t base = 0);

private:
    void setup_ring(uint32_t index, DriverQueue& q, uint16_t base);

    SessionOptions m_options;
    Frontend m_frontend;
    GuestRam m_ram;
    std::unique_ptr<DriverQueue> m_control, m_cursor;
    std::unique_ptr<DisplayPeer> m_display;
    Fd m_backend_channel;
    uint64_t m_offered_features = 0;
    uint64_t m_acked_features = 0;
    bool m_used_add_mem_reg = false;
};

} // namespace vgpu::harness
