#include "display/qemu/qemu_display.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "base/verify.h"
#include "display/qemu/update_message.h"
#include "virtio_gpu/rect.h"

namespace vgpu::display::qemu {

namespace {
template <typename T>
std::span<const std::byte> bytes_of(const T& value)
{
    return std::as_bytes(std::span(&value, 1));
}
} // namespace

// The framebuffer QEMU reads from its dmabuf until it answers a DMABUF_UPDATE ("drawn"): a
// reader of it, so that the guest does not get it back sooner. Asked to let go (the release
// timeout) it can copy nothing out of QEMU's hands: it stops holding, and counts it.
class DmabufHold final : public virtio_gpu::StorageReader {
public:
    DmabufHold(std::shared_ptr<const virtio_gpu::PixelStorage> pixels, uint64_t& let_go_count)
        : m_pixels(std::move(pixels))
        , m_let_go_count(let_go_count)
    {
        m_pixels->add_reader(this);
    }
    ~DmabufHold() override { release(); }
    DmabufHold(const DmabufHold&) = delete;
    DmabufHold& operator=(const DmabufHold&) = delete;
    void let_go() override
    {
        ++m_let_go_count;
        release();
    }

private:
    void release()
    {
        if (auto pixels = std::move(m_pixels))
            pixels->remove_reader(this);
    }
    std::shared_ptr<const virtio_gpu::PixelStorage> m_pixels;
    uint64_t& m_let_go_count;
};

Result<std::unique_ptr<QemuDisplay>> QemuDisplay::create(
    EventLoop& loop, Fd socket, PacingOptions pacing)
{
    std::unique_ptr<QemuDisplay> display(new QemuDisplay(loop, pacing));
    display->m_channel = TRY(DisplayChannel::create(loop, std::move(socket)));
    display->m_channel->set_closed_callback([raw = display.get()] { raw->on_closed(); });
    display->m_channel->set_drained_callback([raw = display.get()] {
        raw->send_state();
        raw->schedule();
    });
    display->handshake();
    return display;
}

QemuDisplay::~QemuDisplay()
{
    if (m_pace_timer)
        m_loop.unwatch(*m_pace_timer);
    // Queries still waiting get "no answer" exactly once, later and from the loop (never from
    // inside a destructor). Tasks posted by on_closed() are guarded by m_lifetime and do
    // nothing once we are gone.
    for (auto& query : m_queries) {
        if (query->timer)
            m_loop.unwatch(*query->timer);
        query->timer.reset();
        if (!query->done) {
            query->done = true;
            m_loop.post([on_reply = std::move(query->on_reply)] { on_reply({}); });
        }
    }
}

void QemuDisplay::handshake()
{
    m_channel->send(
        GpuRequest::GetProtocolFeatures, {}, [this](std::span<const std::byte> payload) {
            uint64_t theirs = 0;
            if (payload.size() == sizeof(theirs))
                std::memcpy(&theirs, payload.data(), sizeof(theirs));
            else
                VGPU_LOG_WARN("display: GET_PROTOCOL_FEATURES reply of {} bytes", payload.size());
            uint64_t agreed = theirs & supported_protocol_features();
            m_protocol_features = agreed;
            m_channel->send(GpuRequest::SetProtocolFeatures, bytes_of(agreed));
            VGPU_LOG_INFO(
                "display: QEMU offers protocol features {:#x}, using {:#x}", theirs, agreed);
            auto waiting = std::move(m_waiting_for_handshake);
            for (auto& action : waiting)
                action();
        });
}

void QemuDisplay::after_handshake(std::function<void()> action)
{
    if (m_protocol_features)
        action();
    else
        m_waiting_for_handshake.push_back(std::move(action));
}

void QemuDisplay::on_closed()
{
    // QEMU will not answer the DMABUF_UPDATEs either: their framebuffers are released.
    for (auto& link : m_links) {
        link.update_waiting = false;
        link.hold.reset();
    }
    // Queries in flight will not be answered: fail them now (from the loop).
    for (auto& query : m_queries)
        if (!query->done)
            m_loop.post(m_lifetime.guard([this, query] { finish_query(query, {}); }));
}

// ---- forwarded queries --------------------------------------------------------------------------

void QemuDisplay::send_query(GpuRequest request, std::vector<std::byte> payload,
    std::function<void(std::span<const std::byte>)> on_reply)
{
    ++m_stats.queries;
    auto query = std::make_shared<Query>();
    query->on_reply = std::move(on_reply);
    m_queries.push_back(query);
    auto timer = m_loop.add_timer(
        m_pacing.reply_timeout, std::chrono::nanoseconds(0), [this, query] {
            query->timer.reset(); // a one-shot timer removes itself
            if (!query->done) {
                ++m_stats.query_timeouts;
                VGPU_LOG_WARN(
                    "display: QEMU did not answer in {} ms", m_pacing.reply_timeout.count());
            }
            finish_query(query, {});
        });
    if (timer)
        query->timer = *timer;
    after_handshake([this, request, payload = std::move(payload), query] {
        if (!m_channel->open()) {
            m_loop.post(m_lifetime.guard([this, query] { finish_query(query, {}); }));
            return;
        }
        // The reply slot stays in the channel's FIFO even after a timeout, so that a late answer
        // is consumed in order and dropped.
        m_channel->send(request, payload,
            [this, query](std::span<const std::byte> reply) { finish_query(query, reply); });
    });
}

void QemuDisplay::finish_query(
    const std::shared_ptr<Query>& query, std::span<const std::byte> payload)
{
    if (query->done)
        return;
    query->done = true;
    if (query->timer) {
        m_loop.unwatch(*query->timer);
        query->timer.reset();
    }
    m_queries.remove(query);
    auto on_reply = std::move(query->on_reply);
    on_reply(payload);
}

void QemuDisplay::query_display_info(
    std::function<void(std::optional<virtio_gpu::RespDisplayInfo>)> done)
{
    send_query(
        GpuRequest::GetDisplayInfo, {}, [done = std::move(done)](std::span<const std::byte> reply) {
            if (reply.size() != sizeof(virtio_gpu::RespDisplayInfo)) {
                done(std::nullopt);
                return;
            }
            virtio_gpu::RespDisplayInfo info;
            std::memcpy(&info, reply.data(), sizeof(info));
            done(info);
        });
}

void QemuDisplay::query_edid(
    uint32_t scanout, std::function<void(std::optional<virtio_gpu::RespEdid>)> done)
{
    if (m_protocol_features && !(*m_protocol_features & (uint64_t(1) << GPU_PF_EDID))) {
        m_loop.post([done = std::move(done)] { done(std::nullopt); });
        return;
    }
    GpuEdidRequest request { scanout };
    auto payload = bytes_of(request);
    send_query(GpuRequest::GetEdid, { payload.begin(), payload.end() },
        [done = std::move(done)](std::span<const std::byte> reply) {
            if (reply.size() != sizeof(virtio_gpu::RespEdid)) {
                done(std::nullopt);
                return;
            }
            virtio_gpu::RespEdid edid;
            std::memcpy(&edid, reply.data(), sizeof(edid));
            if (edid.size > sizeof(edid.edid)) {
                done(std::nullopt);
                return;
            }
            done(edid);
        });
}

// ---- outputs ------------------------------------------------------------------------------------

void QemuDisplay::output_changed(const Output& output)
{
    auto& link = m_links[output.index];
    link.source = output.source;
    uint32_t width = output.width(), height = output.height();
    if (width != link.wanted_width || height != link.wanted_height) {
        // A mode that has not reached QEMU yet is replaced, not queued behind.
        if (link.wanted_width != link.announced_width
            || link.wanted_height != link.announced_height)
            ++m_stats.coalesced;
        link.wanted_width = width;
        link.wanted_height = height;
    }
    // A new source means new content everywhere on the output, from its next flush on.
    link.damage = Rect {};
    link.flipped = output.enabled();
    send_state();
}

void QemuDisplay::resend(const Output& output)
{
    output_changed(output);
    auto& link = m_links[output.index];
    link.flipped = false;
    link.damage = output.enabled() ? output.full() : Rect {};
    schedule();
}

void QemuDisplay::output_damaged(const Output& output, Rect damage)
{
    auto& link = m_links[output.index];
    if (link.flipped) {
        damage = output.full();
        link.flipped = false;
    }
    link.damage = virtio_gpu::rect_union(
        link.damage, virtio_gpu::rect_intersect(damage, output.full()));
    if (wanted_dmabuf(output.index)) {
        send_dmabuf_update(output.index);
        return;
    }
    schedule();
}

void QemuDisplay::schedule()
{
    if (m_pace_timer || !open() || m_channel->busy())
        return; // a timer is armed, or the drained callback will call us
    bool pending = false;
    for (uint32_t i = 0; i < m_links.size(); ++i)
        pending |= m_links[i].source && !virtio_gpu::rect_empty(m_links[i].damage)
            && !wanted_dmabuf(i);
    if (!pending)
        return;
    auto now = std::chrono::steady_clock::now();
    auto due = m_last_batch + m_pacing.min_interval;
    if (now >= due) {
        send_updates();
        return;
    }
    auto timer = m_loop.add_timer(due - now, std::chrono::nanoseconds(0), [this] {
        m_pace_timer.reset();
        schedule();
    });
    if (timer)
        m_pace_timer = *timer;
    else
        send_updates();
}

void QemuDisplay::send_updates()
{
    m_last_batch = std::chrono::steady_clock::now();
    for (uint32_t i = 0; i < m_links.size(); ++i) {
        auto& link = m_links[i];
        if (!link.source || virtio_gpu::rect_empty(link.damage) || wanted_dmabuf(i))
            continue;
        if (link.wanted_width != link.announced_width
            || link.wanted_height != link.announced_height)
            continue; // its SCANOUT goes first, when the queue drains
        Rect damage = std::exchange(link.damage, Rect {});
        size_t row_bytes = size_t(damage.width) * virtio_gpu::BYTES_PER_PIXEL;
        uint32_t band_rows = uint32_t(
            std::clamp<size_t>(m_pacing.max_update_bytes / row_bytes, 1, damage.height));
        for (uint32_t row = 0; row < damage.height; row += band_rows) {
            Rect band { damage.x, damage.y + row, damage.width,
                std::min(band_rows, damage.height - row) };
            auto message = UpdateMessage::create(i, *link.source, band);
            // A row is at most the resource's stride (under 2 GiB): one always fits.
            VGPU_VERIFY(message.has_value());
            ++m_stats.updates;
            m_stats.update_bytes += (*message)->total_bytes();
            m_stats.direct_updates += (*message)->direct() ? 1 : 0;
            m_channel->send_message(message.release_value());
        }
    }
}

void QemuDisplay::cursor_changed(uint32_t scanout, const CursorState& cursor, bool moved_only)
{
    auto& slot = m_cursors[scanout];
    if (slot.image_dirty || slot.position_dirty)
        ++m_stats.coalesced; // the state QEMU had not got yet is replaced by this one
    slot.x = cursor.x;
    slot.y = cursor.y;
    slot.position_dirty = true;
    // A move keeps the image that is pending, if any; anything else (a new image, hidden) is
    // a new image.
    if (!moved_only || !cursor.image) {
        slot.image = cursor.image;
        slot.image_dirty = true;
    }
    send_state();
}

void QemuDisplay::send_state()
{
    // Only while nothing is queued: QEMU that stops reading makes us keep the latest state, not
    // a queue of every change, and it gets that state whole when the socket drains.
    if (!open() || m_channel->busy())
        return;
    for (uint32_t i = 0; i < m_links.size(); ++i) {
        send_dmabuf_state(i);
        if (!open())
            return;
        auto& link = m_links[i];
        if (link.dmabuf) {
            send_dmabuf_update(i);
            continue; // QEMU takes the mode from the dmabuf
        }
        if (link.wanted_width == link.announced_width
            && link.wanted_height == link.announced_height)
            continue;
        // Recorded before sending: a send that drains the queue calls us again.
        link.announced_width = link.wanted_width;
        link.announced_height = link.wanted_height;
        ++m_stats.scanouts;
        GpuScanout scanout { i, link.wanted_width, link.wanted_height };
        m_channel->send(GpuRequest::Scanout, bytes_of(scanout));
        if (!open())
            return;
    }
    for (uint32_t i = 0; i < m_cursors.size() && open(); ++i)
        send_cursor(i);
}

std::optional<GpuDmabufScanout2> QemuDisplay::wanted_dmabuf(uint32_t scanout) const
{
    const auto& link = m_links[scanout];
    if (!m_pacing.dmabuf || !m_protocol_features
        || !(*m_protocol_features & (uint64_t(1) << GPU_PF_DMABUF2)) || !link.source
        || !link.source->dmabuf || link.source->dmabuf_offset != 0)
        return std::nullopt;
    const auto& s = *link.source;
    GpuDmabufScanout2 m {};
    m.dmabuf_scanout = GpuDmabufScanout { scanout, s.rect.x, s.rect.y, s.rect.width, s.rect.height,
        s.resource_width, s.resource_height, s.stride, 0,
        int32_t(virtio_gpu::drm_fourcc(s.format.format)) };
    m.modifier = DRM_FORMAT_MOD_LINEAR;
    return m;
}

void QemuDisplay::send_dmabuf_state(uint32_t scanout)
{
    auto& link = m_links[scanout];
    auto wanted = wanted_dmabuf(scanout);
    if (wanted) {
        // The same dmabuf and layout again (the same framebuffer shown anew) needs no message.
        if (link.dmabuf && link.announced && link.announced_fd == link.source->dmabuf
            && std::memcmp(&*link.announced, &*wanted, sizeof(*wanted)) == 0)
            return;
        auto fd = link.source->dmabuf->dup();
        if (!fd) {
            VGPU_LOG_WARN(
                "display: no descriptor for scanout {}'s dmabuf: {}", scanout, fd.error().message);
            return;
        }
        if (!link.dmabuf)
            VGPU_LOG_INFO("display: scanout {} goes to QEMU as a dmabuf", scanout);
        link.dmabuf = true;
        link.announced = wanted;
        link.announced_fd = link.source->dmabuf;
        link.announced_width = wanted->dmabuf_scanout.width;
        link.announced_height = wanted->dmabuf_scanout.height;
        ++m_stats.dmabuf_scanouts;
        m_channel->send(GpuRequest::DmabufScanout2, bytes_of(*wanted), {}, fd.release_value());
        return;
    }
    if (!link.dmabuf)
        return;
    // Back to UPDATEs (or off): QEMU lets go of the dmabuf, then gets a SCANOUT again.
    VGPU_LOG_INFO("display: scanout {} goes to QEMU as UPDATEs", scanout);
    link.dmabuf = false;
    link.announced.reset();
    link.announced_fd.reset();
    link.announced_width = link.announced_height = 0;
    GpuDmabufScanout off {};
    off.scanout_id = scanout;
    m_channel->send(GpuRequest::DmabufScanout, bytes_of(off));
}

void QemuDisplay::send_dmabuf_update(uint32_t scanout)
{
    auto& link = m_links[scanout];
    if (!open() || m_channel->busy() || !link.dmabuf || link.update_waiting || !link.source
        || virtio_gpu::rect_empty(link.damage))
        return;
    if (link.flipped) {
        link.damage = Rect { 0, 0, link.source->rect.width, link.source->rect.height };
        link.flipped = false;
    }
    Rect damage = std::exchange(link.damage, Rect {});
    GpuUpdate update { scanout, damage.x, damage.y, damage.width, damage.height };
    link.update_waiting = true;
    link.hold = std::make_shared<DmabufHold>(link.source->pixels, m_stats.dmabuf_let_go);
    ++m_stats.dmabuf_updates;
    // QEMU answers once its console drew the frame: then the guest may have the buffer back.
    m_channel->send(
        GpuRequest::DmabufUpdate, bytes_of(update), [this, scanout](std::span<const std::byte>) {
            ++m_stats.dmabuf_replies;
            auto& l = m_links[scanout];
            l.update_waiting = false;
            l.hold.reset();
            send_dmabuf_update(scanout);
        });
}

void QemuDisplay::send_cursor(uint32_t scanout)
{
    auto& slot = m_cursors[scanout];
    if (!slot.image_dirty && !slot.position_dirty)
        return;
    GpuCursorPos pos { scanout, slot.x, slot.y };
    bool image = slot.image_dirty;
    // Cleared before sending: a send that drains the queue calls send_state() again.
    slot.image_dirty = slot.position_dirty = false;
    if (!slot.image) {
        m_channel->send(GpuRequest::CursorPosHide, bytes_of(pos));
        ++m_stats.cursor_moves;
    } else if (!image) {
        m_channel->send(GpuRequest::CursorPos, bytes_of(pos));
        ++m_stats.cursor_moves;
    } else {
        GpuCursorUpdate update {};
        update.pos = pos;
        update.hot_x = slot.image->hot_x;
        update.hot_y = slot.image->hot_y;
        std::memcpy(update.data, slot.image->argb.data(),
            std::min(sizeof(update.data), slot.image->argb.size() * sizeof(uint32_t)));
        m_channel->send(GpuRequest::CursorUpdate, bytes_of(update));
        ++m_stats.cursor_updates;
    }
}

} // namespace vgpu::display::qemu
