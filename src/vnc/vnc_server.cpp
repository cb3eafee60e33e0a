#include "vnc/vnc_server.h"

#include <sys/select.h>

#include <bit>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <rfb/rfb.h>

#include "base/log.h"
#include "export/describe.h"
#include "view/view_state.h"

namespace vgpu::vnc {

namespace {

// libvncserver's log lines, into ours (they end in a newline, which ours adds).
void forward_log(log::Level level, const char* format, va_list args)
{
    char line[512];
    std::vsnprintf(line, sizeof(line), format, args);
    std::string_view text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.remove_suffix(1);
    log::message(level, "libvncserver: {}", text);
}
void log_info(const char* format, ...)
{
    va_list args;
    va_start(args, format);
    forward_log(log::Level::Debug, format, args);
    va_end(args);
}
void log_error(const char* format, ...)
{
    va_list args;
    va_start(args, format);
    forward_log(log::Level::Warn, format, args);
    va_end(args);
}

// DRM_FORMAT_XRGB8888, what a guest shows unless it says otherwise.
constexpr uint32_t XRGB8888 = 'X' | 'R' << 8 | '2' << 16 | uint32_t('4') << 24;

VncServer* server_of(rfbClientPtr client)
{
    return static_cast<VncServer*>(client->screen->screenData);
}

// Every client of `screen`, one at a time (libvncserver's iterator, released on every path).
template <typename F>
void for_each_client(rfbScreenInfoPtr screen, F&& f)
{
    rfbClientIteratorPtr it = rfbGetClientIterator(screen);
    while (rfbClientPtr client = rfbClientIteratorNext(it))
        f(client);
    rfbReleaseClientIterator(it);
}

} // namespace

Result<std::unique_ptr<VncServer>> VncServer::create(
    const VncOptions& options, InputSink* input, uint32_t width, uint32_t height)
{
    rfbLog = log_info;
    rfbErr = log_error;
    std::unique_ptr<VncServer> server(new VncServer(input));
    server->m_options = options;
    server->m_frame.assign(size_t(width) * height * 4 + 8, 0);
    int argc = 1;
    char program[] = "vgpu-vnc";
    char* argv[] = { program, nullptr };
    rfbScreenInfoPtr screen = rfbGetScreen(&argc, argv, int(width), int(height), 8, 3, 4);
    if (!screen)
        return Error::format("libvncserver could not make a screen");
    server->m_screen = screen;
    server->m_width = width;
    server->m_height = height;
    screen->frameBuffer = server->m_frame.data();
    screen->screenData = server.get();
    screen->desktopName = server->m_options.desktop_name.c_str();
    // No listeners of libvncserver's own (our loop accepts, on exactly the address asked for)
    // and no HTTP server (ours serves the page: libvncserver's takes one connection at a time).
    screen->autoPort = FALSE;
    screen->port = 0;
    screen->ipv6port = 0;
    screen->udpPort = 0;
    screen->httpDir = nullptr;
    screen->httpPort = 0;
    screen->http6Port = 0;
    // Several viewers at once; updates as soon as asked for (a deferral would need a timer).
    screen->alwaysShared = TRUE;
    screen->deferUpdateTime = 0;
    screen->deferPtrUpdateTime = 0;
    screen->maxClientWait = int(options.client_wait.count());
    screen->handleEventsEagerly = TRUE;
    // The guest's cursor is never drawn into the frame buffer (clients without cursor shapes do
    // not see it): libvncserver draws screen->cursor, and ours is handed out by getCursorPtr.
    screen->cursor = nullptr;
    screen->getCursorPtr = on_get_cursor;
    screen->kbdAddEvent = on_key;
    screen->ptrAddEvent = on_pointer;
    screen->kbdReleaseAllKeys = on_release_all;
    screen->displayFinishedHook = on_update_sent;
    screen->newClientHook = [](rfbClientPtr client) -> rfbNewClientAction {
        client->clientGoneHook = on_client_gone;
        return RFB_CLIENT_ACCEPT;
    };
    if (!options.password.empty()) {
        server->m_password = options.password;
        server->m_passwords = { server->m_password.data(), nullptr };
        screen->authPasswdData = server->m_passwords.data();
        screen->passwordCheck = rfbCheckPasswordByList;
        screen->authPasswdFirstViewOnly = 1;
    }
    if (!options.tls_cert.empty()) {
        screen->sslcertfile = server->m_options.tls_cert.data();
        screen->sslkeyfile = server->m_options.tls_key.empty() ? server->m_options.tls_cert.data()
                                                               : server->m_options.tls_key.data();
    }
    TRY(server->set_format(XRGB8888));
    rfbInitServer(screen);
    return server;
}

VncServer::VncServer(InputSink* input)
    : m_input(input)
{
}

VncServer::~VncServer()
{
    if (!m_screen)
        return;
    // Not rfbShutdownServer(, TRUE): it joins client threads, and ours have none. Closed
    // clients are let go by the next rfbProcessEvents.
    for_each_client(m_screen, [](rfbClientPtr client) { rfbCloseClient(client); });
    rfbProcessEvents(m_screen, 0);
    rfbShutdownServer(m_screen, FALSE);
    m_screen->cursor = nullptr;
    rfbScreenCleanup(m_screen);
}

void VncServer::add_client(Fd socket)
{
    // libvncserver keeps its clients in an fd_set.
    if (clients() >= m_options.max_clients || socket.get() >= FD_SETSIZE) {
        ++m_counters.clients_refused;
        log::message(log::Level::Warn, "vnc: a connection refused: {} clients already", clients());
        return;
    }
    // On failure libvncserver has closed the socket itself.
    if (rfbNewClient(m_screen, socket.release()))
        ++m_counters.clients_accepted;
}

size_t VncServer::clients() const
{
    size_t n = 0;
    for_each_client(m_screen, [&](rfbClientPtr client) { n += client->sock >= 0; });
    return n;
}

void VncServer::fill(PollSet& set) const
{
    for_each_client(m_screen, [&](rfbClientPtr client) { set.add(client->sock, POLLIN); });
}

void VncServer::process() { rfbProcessEvents(m_screen, 0); }

Result<void> VncServer::set_format(uint32_t fourcc)
{
    auto masks = view::channel_masks(fourcc);
    if (!masks) {
        if (m_warned_fourcc != fourcc)
            log::message(log::Level::Warn, "vnc: no RFB pixel format for {}",
                exporting::fourcc_name(fourcc));
        m_warned_fourcc = fourcc;
        return Error::format("no RFB pixel format for {}", exporting::fourcc_name(fourcc));
    }
    // RFB §7.4: true colour, the shift of each 8-bit channel in a little-endian 32-bit pixel:
    // the guest's own layout, so that the damage is copied as it is.
    rfbPixelFormat& f = m_screen->serverFormat;
    f.bitsPerPixel = 32;
    f.depth = 24;
    f.bigEndian = 0;
    f.trueColour = 1;
    f.redMax = f.greenMax = f.blueMax = 255;
    f.redShift = uint8_t(std::countr_zero(masks->r));
    f.greenShift = uint8_t(std::countr_zero(masks->g));
    f.blueShift = uint8_t(std::countr_zero(masks->b));
    m_fourcc = fourcc;
    for_each_client(m_screen, [&](rfbClientPtr client) { m_screen->setTranslateFunction(client); });
    refresh_cursor();
    return {};
}

void VncServer::resize(uint32_t width, uint32_t height)
{
    if (!width || !height || (width == m_width && height == m_height))
        return;
    // 8 bytes beyond the last pixel: libvncserver's encoders read a word at a time.
    std::vector<char> frame(size_t(width) * height * 4 + 8, 0);
    rfbNewFramebuffer(m_screen, frame.data(), int(width), int(height), 8, 3, 4);
    m_frame.swap(frame);
    m_width = width;
    m_height = height;
    ++m_counters.resizes;
    // rfbNewFramebuffer set libvncserver's default pixel format again.
    (void)set_format(m_fourcc);
}

Result<void> VncServer::update(const exporting::MappedBuffer& buffer,
    const exporting::Rect32& source, std::span<const exporting::Rect32> damage)
{
    const auto& info = buffer.info();
    if (info.fourcc != m_fourcc)
        TRY(set_format(info.fourcc));
    std::vector<std::byte> scratch;
    for (const auto& r : damage) {
        // The damage is in output coordinates, clipped by ViewState to the mode; the frame
        // buffer may be smaller for a moment (a FLIP before its MODE).
        if (r.x >= m_width || r.y >= m_height)
            continue;
        uint32_t w = std::min(r.width, m_width - r.x), h = std::min(r.height, m_height - r.y);
        size_t row_bytes = size_t(w) * 4;
        for (uint32_t y = 0; y < h; ++y) {
            uint64_t at = uint64_t(source.y + r.y + y) * info.stride + uint64_t(source.x + r.x) * 4;
            const std::byte* row = buffer.bytes(at, row_bytes, scratch);
            if (!row)
                return Error::format("FLIP damage {}x{}+{}+{} runs past buffer {}", r.width,
                    r.height, r.x, r.y, info.buffer);
            std::memcpy(m_frame.data() + (size_t(r.y + y) * m_width + r.x) * 4, row, row_bytes);
        }
        rfbMarkRectAsModified(m_screen, int(r.x), int(r.y), int(r.x + w), int(r.y + h));
        ++m_counters.rects_marked;
        m_counters.bytes_copied += row_bytes * h;
    }
    return {};
}

void VncServer::set_cursor(const exporting::MappedBuffer* image, uint32_t hot_x, uint32_t hot_y)
{
    m_cursor_argb.clear();
    m_cursor_width = m_cursor_height = 0;
    if (image) {
        const auto& info = image->info();
        // A cursor shape goes in one update buffer (libvncserver's UPDATE_BUF_SIZE): virtio-gpu's
        // are 64x64.
        m_cursor_width = std::min(info.width, 64u);
        m_cursor_height = std::min(info.height, 64u);
        m_cursor_argb.resize(size_t(m_cursor_width) * m_cursor_height);
        std::vector<std::byte> scratch;
        for (uint32_t y = 0; y < m_cursor_height; ++y)
            if (const std::byte* row = image->bytes(
                    uint64_t(y) * info.stride, size_t(m_cursor_width) * 4, scratch))
                std::memcpy(
                    &m_cursor_argb[size_t(y) * m_cursor_width], row, size_t(m_cursor_width) * 4);
    }
    m_cursor_hot_x = std::min(hot_x, m_cursor_width ? m_cursor_width - 1 : 0);
    m_cursor_hot_y = std::min(hot_y, m_cursor_height ? m_cursor_height - 1 : 0);
    refresh_cursor();
}

void VncServer::refresh_cursor()
{
    if (m_cursor_argb.empty()) {
        m_cursor.reset();
    } else {
        uint32_t w = m_cursor_width, h = m_cursor_height, row_bits = (w + 7) / 8;
        const rfbPixelFormat& f = m_screen->serverFormat;
        m_cursor_rich.assign(size_t(w) * h * 4 + 8, 0);
        m_cursor_mask.assign(size_t(row_bits) * h, 0);
        m_cursor_source.assign(size_t(row_bits) * h, 0);
        for (uint32_t y = 0; y < h; ++y) {
            for (uint32_t x = 0; x < w; ++x) {
                uint32_t argb = m_cursor_argb[size_t(y) * w + x];
                uint32_t a = argb >> 24, r = (argb >> 16) & 0xff, g = (argb >> 8) & 0xff,
                         b = argb & 0xff;
                uint32_t pixel = r << f.redShift | g << f.greenShift | b << f.blueShift;
                std::memcpy(&m_cursor_rich[(size_t(y) * w + x) * 4], &pixel, 4);
                uint8_t bit = uint8_t(0x80 >> (x % 8));
                // RichCursor has a 1-bit mask: half transparent counts as shown.
                if (a >= 128)
                    m_cursor_mask[size_t(y) * row_bits + x / 8] |= bit;
                // XCursor clients get two colours: dark pixels in the foreground (black).
                if (r * 3 + g * 6 + b < 128 * 10)
                    m_cursor_source[size_t(y) * row_bits + x / 8] |= bit;
            }
        }
        m_cursor = std::make_unique<rfbCursor>();
        *m_cursor = rfbCursor {};
        m_cursor->width = uint16_t(w);
        m_cursor->height = uint16_t(h);
        m_cursor->xhot = uint16_t(m_cursor_hot_x);
        m_cursor->yhot = uint16_t(m_cursor_hot_y);
        m_cursor->source = m_cursor_source.data();
        m_cursor->mask = m_cursor_mask.data();
        m_cursor->richSource = m_cursor_rich.data();
        m_cursor->backRed = m_cursor->backGreen = m_cursor->backBlue = 0xffff;
    }
    for_each_client(m_screen, [](rfbClientPtr client) { client->cursorWasChanged = TRUE; });
}

void VncServer::move_cursor(int32_t x, int32_t y)
{
    // libvncserver's position is the hot spot's.
    int hx = std::clamp(x + int(m_cursor_hot_x), 0, int(m_width) - 1);
    int hy = std::clamp(y + int(m_cursor_hot_y), 0, int(m_height) - 1);
    if (hx == m_screen->cursorX && hy == m_screen->cursorY)
        return;
    m_screen->cursorX = hx;
    m_screen->cursorY = hy;
    for_each_client(m_screen, [](rfbClientPtr client) { client->cursorWasMoved = TRUE; });
}

rfbCursor* VncServer::on_get_cursor(rfbClientPtr client)
{
    return server_of(client)->m_cursor.get();
}

void VncServer::on_key(signed char down, uint32_t keysym, rfbClientPtr client)
{
    auto* self = server_of(client);
    ++self->m_counters.key_events;
    if (self->m_input)
        self->m_input->key(keysym, down != 0);
}

void VncServer::on_pointer(int buttons, int x, int y, rfbClientPtr client)
{
    auto* self = server_of(client);
    ++self->m_counters.pointer_events;
    if (self->m_input)
        self->m_input->pointer(x, y, uint32_t(buttons), self->m_width, self->m_height);
}

void VncServer::on_release_all(rfbClientPtr client)
{
    if (auto* self = server_of(client); self->m_input)
        self->m_input->release_all();
}

void VncServer::on_client_gone(rfbClientPtr client)
{
    log::message(log::Level::Info, "vnc: client {} gone", client->host ? client->host : "?");
    if (auto* self = server_of(client); self->m_input)
        self->m_input->release_all();
}

void VncServer::on_update_sent(rfbClientPtr client, int result)
{
    if (result)
        ++server_of(client)->m_counters.updates_sent;
}

} // namespace vgpu::vnc
