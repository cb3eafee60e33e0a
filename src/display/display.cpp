#include "display/display.h"

#include "base/log.h"

namespace vgpu::display {

Display::Display(EventLoop& loop, qemu::PacingOptions pacing)
    : m_loop(loop)
    , m_pacing(pacing)
{
    for (uint32_t i = 0; i < m_outputs.size(); ++i)
        m_outputs[i].index = i;
}

Display::~Display() = default;

template <typename F>
void Display::for_each_sink(F&& f)
{
    for (auto* sink : m_sinks)
        f(*sink);
    if (m_qemu)
        f(*m_qemu);
}

Result<void> Display::attach_qemu_display(Fd socket)
{
    // QEMU sends a new socket at every DRIVER_OK; the old one is finished.
    m_qemu.reset();
    m_qemu = TRY(qemu::QemuDisplay::create(m_loop, std::move(socket), m_pacing));
    // Whatever is already on screen goes to the new socket.
    for (const auto& output : m_outputs)
        if (output.enabled())
            m_qemu->resend(output);
    for (uint32_t i = 0; i < m_cursors.size(); ++i)
        if (m_cursors[i].image)
            m_qemu->cursor_changed(i, m_cursors[i], false);
    return {};
}

void Display::detach_qemu_display() { m_qemu.reset(); }

bool Display::has_qemu_display() const { return m_qemu && m_qemu->open(); }

void Display::query_display_info(
    std::function<void(std::optional<virtio_gpu::RespDisplayInfo>)> done)
{
    if (!has_qemu_display()) {
        m_loop.post([done = std::move(done)] { done(std::nullopt); });
        return;
    }
    m_qemu->query_display_info(std::move(done));
}

void Display::query_edid(
    uint32_t scanout, std::function<void(std::optional<virtio_gpu::RespEdid>)> done)
{
    if (!has_qemu_display()) {
        m_loop.post([done = std::move(done)] { done(std::nullopt); });
        return;
    }
    m_qemu->query_edid(scanout, std::move(done));
}

void Display::scanout_set(uint32_t scanout, std::optional<virtio_gpu::ScanoutSource> source)
{
    auto& output = m_outputs[scanout];
    output.source = std::move(source);
    ++output.flips;
    ++m_stats.flips;
    for_each_sink([&](DisplaySink& sink) { sink.output_changed(output); });
}

void Display::scanout_damaged(uint32_t scanout, Rect damage)
{
    auto& output = m_outputs[scanout];
    if (!output.enabled())
        return;
    ++output.generation;
    ++m_stats.damage_events;
    for_each_sink([&](DisplaySink& sink) { sink.output_damaged(output, damage); });
}

bool Display::pixels_will_change(const virtio_gpu::PixelStorage& pixels)
{
    bool checksum = false;
    for_each_sink([&](DisplaySink& sink) { checksum |= sink.pixels_will_change(pixels); });
    return checksum;
}

void Display::when_released(std::shared_ptr<const virtio_gpu::PixelStorage> pixels,
    std::chrono::milliseconds timeout, std::function<void(bool timed_out)> done,
    virtio_gpu::PixelStorage::Readers which)
{
    struct Wait {
        std::function<void(bool)> done;
        std::optional<EventLoop::WatchId> timer;
        bool timed_out = false;
        bool finished = false;
    };
    auto wait = std::make_shared<Wait>();
    wait->done = std::move(done);
    auto finish = m_lifetime.guard([this, wait] {
        if (wait->finished)
            return;
        wait->finished = true;
        if (wait->timer)
            m_loop.unwatch(*wait->timer);
        wait->timer.reset();
        // Never from inside a caller: the device completes its command from this.
        m_loop.post(m_lifetime.guard(
            [done = std::move(wait->done), timed_out = wait->timed_out] { done(timed_out); }));
    });
    pixels->when_unread(finish, which);
    if (wait->finished)
        return;
    auto timer = m_loop.add_timer(
        timeout, std::chrono::nanoseconds(0), [wait, pixels, finish, which] {
            wait->timer.reset(); // a one-shot timer removes itself
            wait->timed_out = true;
            // Each reader copies what it still needs; the last one leaving finishes the wait.
            pixels->make_readers_let_go(which);
            auto again = finish;
            again();
        });
    if (timer) {
        wait->timer = *timer;
        return;
    }
    wait->timed_out = true;
    pixels->make_readers_let_go(which);
    auto again = finish;
    again();
}

void Display::cursor_set(
    uint32_t scanout, std::optional<virtio_gpu::CursorImage> image, uint32_t x, uint32_t y)
{
    auto& cursor = m_cursors[scanout];
    cursor.image = std::move(image);
    cursor.x = x;
    cursor.y = y;
    ++m_stats.cursor_updates;
    VGPU_LOG_DEBUG(
        "cursor {} on scanout {} at {},{}", cursor.image ? "image" : "hidden", scanout, x, y);
    for_each_sink([&](DisplaySink& sink) { sink.cursor_changed(scanout, cursor, false); });
}

void Display::guest_memory_gone(bool frontend_gone)
{
    for_each_sink([&](DisplaySink& sink) { sink.guest_memory_gone(frontend_gone); });
}

void Display::cursor_move(uint32_t scanout, uint32_t x, uint32_t y)
{
    auto& cursor = m_cursors[scanout];
    cursor.x = x;
    cursor.y = y;
    ++m_stats.cursor_moves;
    VGPU_LOG_DEBUG("cursor move on scanout {} to {},{}", scanout, x, y);
    for_each_sink([&](DisplaySink& sink) { sink.cursor_changed(scanout, cursor, true); });
}

} // namespace vgpu::display
