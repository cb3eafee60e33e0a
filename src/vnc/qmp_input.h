// Keyboard and pointer to the guest through QEMU's QMP input-send-event (qapi/ui.json): a QMP
// client on its own socket (QEMU serves one client per QMP socket, so vgpu-vnc gets a -qmp of its
// own). Non-blocking inside vgpu-vnc's poll loop: the greeting and qmp_capabilities come first,
// events sent before then wait in a bounded queue, replies are read and errors counted. A lost
// connection (QEMU restarted) is retried at the next event, at most once a second.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu::vnc {

// QMP's absolute axis range (QEMU's INPUT_EVENT_ABS_MIN..MAX); a tablet reports it to the guest.
constexpr uint32_t ABS_MAX = 0x7fff;
// Pixel `position` of `size` on the absolute axis: 0 at the first pixel, ABS_MAX at the last.
uint32_t abs_axis_value(int position, uint32_t size);

struct QmpCounters {
    uint64_t commands = 0; // input-send-event commands sent
    uint64_t replies = 0; // {"return": ...}
    uint64_t errors = 0; // {"error": ...}
    uint64_t unmapped_keys = 0; // keysyms no US key types
    uint64_t dropped = 0; // events lost: no connection, or the queue was full
    uint64_t connects = 0;
};

class QmpInput {
public:
    explicit QmpInput(std::string path)
        : m_path(std::move(path))
    {
    }

    // The socket to poll (-1 while not connected) and whether to poll it for writing too.
    int fd() const { return m_socket.get(); }
    bool wants_write() const { return !m_out.empty(); }
    // Reads what QEMU sent; a closed connection is not an error (it is retried later).
    void on_readable();
    void on_writable();

    // An RFB key event (keysym, RFB §7.5.4).
    void key(uint32_t keysym, bool down);
    // An RFB pointer event: the position in a width x height frame and the button mask (bit 0
    // left, 1 middle, 2 right, 3/4 wheel up/down, 5/6 wheel left/right).
    void pointer(int x, int y, uint32_t button_mask, uint32_t width, uint32_t height);
    // Releases every key this client still holds down (a VNC client that went away).
    void release_all_keys();

    const QmpCounters& counters() const { return m_counters; }
    bool ready() const { return m_ready; }
    const std::string& last_error() const { return m_last_error; }
    // Connects now (also done lazily by the first event); an error when QEMU's socket refuses.
    Result<void> connect();

private:
    void send(nlohmann::json events);
    void disconnect(std::string_view why);
    void handle(const nlohmann::json& message);

    std::string m_path;
    Fd m_socket;
    bool m_ready = false; // qmp_capabilities answered
    std::string m_in, m_out;
    std::string m_pending; // commands queued before the capabilities negotiation finished
    std::chrono::steady_clock::time_point m_last_attempt {};
    std::set<std::string, std::less<>> m_held; // qcodes down
    uint32_t m_buttons = 0;
    QmpCounters m_counters;
    std::string m_last_error;
};

} // namespace vgpu::vnc
