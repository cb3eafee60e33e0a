// One output as an RFB server, on libvncserver (docs/vnc.md). Its frame buffer is ours: the
// damage of each flip is copied in from the mapped export buffer (the one copy; libvncserver
// encodes from it for every client) and marked modified, so updates follow the guest's damage,
// never a poll or a whole-frame diff. A mode change is a new frame buffer (clients get a desktop
// resize), the guest's cursor goes as a cursor shape (RichCursor/XCursor pseudo-encodings), and
// key and pointer events go to an InputSink. Single-threaded: the caller's loop accepts the
// connections (ours on TCP, WebSocket upgrades from the web server), polls the clients' sockets
// and calls process().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "export/client.h"
#include "vnc/poll_set.h"

// libvncserver's types, kept out of our headers (its names, not ours).
struct _rfbScreenInfo; // NOLINT(bugprone-reserved-identifier)
struct _rfbClientRec; // NOLINT(bugprone-reserved-identifier)
struct rfbCursor;

namespace vgpu::vnc {

class InputSink {
public:
    virtual ~InputSink() = default;
    virtual void key(uint32_t keysym, bool down) = 0;
    virtual void pointer(int x, int y, uint32_t buttons, uint32_t width, uint32_t height) = 0;
    // A client went away: nothing it pressed may stay down in the guest.
    virtual void release_all() = 0;
};

struct VncOptions {
    std::string desktop_name = "vgpu-display";
    // VNC authentication (RFB §7.2.2) with this password; none when empty.
    std::string password;
    // wss:// for WebSocket clients (libvncserver's TLS, GnuTLS); plain RFB has no TLS in it.
    std::string tls_cert, tls_key;
    // How long a write to a client that does not read may block the loop.
    std::chrono::milliseconds client_wait { 5000 };
    size_t max_clients = 16;
};

struct VncCounters {
    uint64_t clients_accepted = 0;
    uint64_t clients_refused = 0; // over max_clients
    uint64_t updates_sent = 0; // FramebufferUpdate messages, all clients
    uint64_t rects_marked = 0; // damage rectangles copied in
    uint64_t bytes_copied = 0; // into the frame buffer
    uint64_t resizes = 0;
    uint64_t key_events = 0, pointer_events = 0;
};

class VncServer {
public:
    static Result<std::unique_ptr<VncServer>> create(
        const VncOptions& options, InputSink* input, uint32_t width = 640, uint32_t height = 480);
    ~VncServer();
    VncServer(const VncServer&) = delete;
    VncServer& operator=(const VncServer&) = delete;

    // A connected socket (plain RFB, or a WebSocket upgrade still unread) becomes a client.
    // libvncserver waits up to 100 ms here for a WebSocket or TLS client's first bytes.
    void add_client(Fd socket);
    size_t clients() const;
    void fill(PollSet& set) const;
    // Reads what clients sent and sends the updates they asked for.
    void process();

    uint32_t width() const { return m_width; }
    uint32_t height() const { return m_height; }
    // A new frame buffer of width x height (black), announced to clients as a desktop resize.
    void resize(uint32_t width, uint32_t height);
    // Copies `damage` (output coordinates) of the picture at `source` in `buffer` into the frame
    // buffer, in the buffer's pixel format (an unknown fourcc is an error, once per fourcc).
    Result<void> update(const exporting::MappedBuffer& buffer, const exporting::Rect32& source,
        std::span<const exporting::Rect32> damage);
    // The guest's cursor: image (AR24) and hot spot, nullptr to hide it; and its position.
    void set_cursor(const exporting::MappedBuffer* image, uint32_t hot_x, uint32_t hot_y);
    void move_cursor(int32_t x, int32_t y);

    const VncCounters& counters() const { return m_counters; }

private:
    explicit VncServer(InputSink* input);
    Result<void> set_format(uint32_t fourcc);
    void refresh_cursor();

    static void on_key(signed char down, uint32_t keysym, _rfbClientRec* client);
    static void on_pointer(int buttons, int x, int y, _rfbClientRec* client);
    static void on_release_all(_rfbClientRec* client);
    static void on_client_gone(_rfbClientRec* client);
    static void on_update_sent(_rfbClientRec* client, int result);
    static rfbCursor* on_get_cursor(_rfbClientRec* client);

    InputSink* m_input;
    VncOptions m_options;
    _rfbScreenInfo* m_screen = nullptr;
    std::vector<char> m_frame;
    uint32_t m_width = 0, m_height = 0;
    uint32_t m_fourcc = 0;
    std::vector<char*> m_passwords; // libvncserver's password list: {password, nullptr}
    std::string m_password;
    // The cursor shape, in the server's pixel format, with its masks.
    std::unique_ptr<rfbCursor> m_cursor;
    std::vector<unsigned char> m_cursor_rich, m_cursor_mask, m_cursor_source;
    std::vector<uint32_t> m_cursor_argb; // the image as given, to convert again on a format change
    uint32_t m_cursor_width = 0, m_cursor_height = 0, m_cursor_hot_x = 0, m_cursor_hot_y = 0;
    uint32_t m_warned_fourcc = 0;
    VncCounters m_counters;
};

} // namespace vgpu::vnc
