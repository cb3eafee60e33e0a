// The display layer's face to the device: it keeps one Output per scanout and fans changes out
// to the sinks. QEMU's display (when QEMU hands over its socket) is one of the sinks and also
// answers display info and EDID.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "base/event_loop.h"
#include "base/lifetime.h"
#include "display/output.h"
#include "display/qemu/qemu_display.h"
#include "display/sink.h"
#include "virtio_gpu/display_host.h"

namespace vgpu::display {

struct DisplayStats {
    uint64_t flips = 0;
    uint64_t damage_events = 0;
    uint64_t cursor_updates = 0;
    uint64_t cursor_moves = 0;
};

class Display final : public virtio_gpu::DisplayHost {
public:
    explicit Display(EventLoop& loop, qemu::PacingOptions pacing = {});
    ~Display() override;

    void add_sink(DisplaySink* sink) { m_sinks.push_back(sink); }

    Result<void> attach_qemu_display(Fd socket) override;
    void detach_qemu_display() override;
    bool has_qemu_display() const override;
    void query_display_info(
        std::function<void(std::optional<virtio_gpu::RespDisplayInfo>)> done) override;
    void query_edid(
        uint32_t scanout, std::function<void(std::optional<virtio_gpu::RespEdid>)> done) override;
    void scanout_set(uint32_t scanout, std::optional<virtio_gpu::ScanoutSource> source) override;
    void scanout_damaged(uint32_t scanout, Rect damage) override;
    bool pixels_will_change(const virtio_gpu::PixelStorage& pixels) override;
    void when_released(std::shared_ptr<const virtio_gpu::PixelStorage> pixels,
        std::chrono::milliseconds timeout, std::function<void(bool timed_out)> done,
        virtio_gpu::PixelStorage::Readers which) override;
    void cursor_set(uint32_t scanout, std::optional<virtio_gpu::CursorImage> image, uint32_t x,
        uint32_t y) override;
    void cursor_move(uint32_t scanout, uint32_t x, uint32_t y) override;
    void guest_memory_gone(bool frontend_gone) override;

    const Output& output(uint32_t index) const { return m_outputs[index]; }
    const CursorState& cursor(uint32_t index) const { return m_cursors[index]; }
    const DisplayStats& stats() const { return m_stats; }
    qemu::QemuDisplay* qemu() { return m_qemu.get(); }

private:
    template <typename F>
    void for_each_sink(F&& f);

    EventLoop& m_loop;
    qemu::PacingOptions m_pacing;
    std::array<Output, virtio_gpu::MAX_SCANOUTS> m_outputs {};
    std::array<CursorState, virtio_gpu::MAX_SCANOUTS> m_cursors {};
    std::vector<DisplaySink*> m_sinks;
    std::unique_ptr<qemu::QemuDisplay> m_qemu;
    DisplayStats m_stats;
    Lifetime m_lifetime; // for timers and tasks that may outlive us
};

} // namespace vgpu::display
