// QEMU's side of the vhost-user-gpu display socket: a socketpair whose far end goes to the backend
// with GPU_SET_SOCKET. A thread reads every message, answers the ones QEMU answers, and records
// them all for the tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "base/fd.h"

namespace vgpu::harness {

struct DisplayMessage {
    uint32_t request;
    uint32_t flags;
    std::vector<std::byte> payload;
    std::shared_ptr<const Fd> fd; // a descriptor that came with it (SCM_RIGHTS)
};

class DisplayPeer {
public:
    // QEMU 10 answers GET_PROTOCOL_FEATURES with EDID | DMABUF2, and with -display none its
    // display info is one enabled 1280x800 output.
    explicit DisplayPeer(uint64_t protocol_features = 0x3);

    // What GET_DISPLAY_INFO answers: enabled outputs' sizes (at most 16).
    void set_outputs(std::vector<std::pair<uint32_t, uint32_t>> outputs);
    // Stop answering queries (a hung QEMU).
    void set_silent(bool silent);
    // Stop reading the socket at all (a QEMU whose main loop is busy); resume with false.
    void set_reading_paused(bool paused);
    // Keep the replies to DMABUF_UPDATE back (a GL console that has not drawn yet); false sends
    // the ones kept, in order. QEMU replies to each once drawn.
    void set_holding_dmabuf_replies(bool holding);
    // A 128-byte EDID blob GET_EDID answers with (its first bytes mark the scanout).
    static std::vector<uint8_t> fake_edid(uint32_t scanout);
    ~DisplayPeer();

    // The end to send to the backend (take it once).
    Fd take_backend_end() { return std::move(m_backend_end); }

    std::vector<DisplayMessage> messages() const;
    // Waits until a message of this type has arrived (counting from the start).
    std::optional<DisplayMessage> wait_for(uint32_t request,
        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const;
    // The index-th message of this type (0 is the first), waiting for it to arrive.
    std::optional<DisplayMessage> wait_for_nth(uint32_t request, size_t index,
        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const;
    // The first message of this type for which `match` holds, waiting for it to arrive.
    std::optional<DisplayMessage> wait_for_matching(uint32_t request,
        const std::function<bool(const DisplayMessage&)>& match,
        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const;
    size_t count(uint32_t request) const;
    // Waits until no message has arrived for `quiet` (the backend paces its UPDATEs); false if
    // messages kept coming for `timeout`.
    bool wait_quiet(std::chrono::milliseconds quiet,
        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const;
    bool closed() const;

private:
    void run();
    bool read_exact(std::byte* out, size_t size);
    void reply(uint32_t request, std::span<const std::byte> payload);
    void answer(const DisplayMessage& message);

    uint64_t m_protocol_features;
    Fd m_ours, m_backend_end, m_stop;
    std::thread m_thread;
    mutable std::mutex m_mutex;
    mutable std::condition_variable m_changed;
    std::vector<DisplayMessage> m_messages; // GUARDED_BY(m_mutex)
    bool m_closed = false; // GUARDED_BY(m_mutex)
    std::vector<std::pair<uint32_t, uint32_t>> m_outputs { { 1280, 800 } }; // GUARDED_BY(m_mutex)
    bool m_silent = false; // GUARDED_BY(m_mutex)
    bool m_paused = false; // GUARDED_BY(m_mutex)
    bool m_holding_dmabuf = false; // GUARDED_BY(m_mutex)
    size_t m_held_dmabuf_replies = 0; // GUARDED_BY(m_mutex)
    std::shared_ptr<const Fd> m_received_fd; // the reader thread's, for the next message
};

} // namespace vgpu::harness
