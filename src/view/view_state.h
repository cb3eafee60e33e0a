// vgpu-view's model of one leased output, built from the export records alone (no SDL): the
// buffers it was sent (mapped read-only), the one shown, the damage not uploaded yet, and the
// cursor. The window side (vgpu_view.cpp) asks it what to upload and draw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "export/client.h"

namespace vgpu::view {

namespace ex = vgpu::exporting;

struct Upload {
    const ex::MappedBuffer* buffer = nullptr;
    ex::Rect32 source {}; // the output's picture in the buffer
    std::vector<ex::Rect32> damage; // output coordinates, clipped to the mode
};

struct CursorView {
    const ex::MappedBuffer* image = nullptr; // nullptr: hidden
    uint32_t image_id = 0; // changes when the image does
    int32_t x = 0, y = 0; // top-left in output coordinates
    uint32_t hot_x = 0, hot_y = 0; // the hot spot in the image
};

class ViewState {
public:
    // What a record changed.
    enum class Change {
        Nothing,
        NewMode,
        NewFrame,
        NewCursor,
        LeaseRevoked
    };
    // Applies one record; an error for a record that breaks the protocol (a FLIP of a buffer
    // never sent, a buffer that does not map).
    Result<Change> apply(ex::Message& message);

    bool enabled() const { return m_enabled; }
    uint32_t width() const { return m_width; }
    uint32_t height() const { return m_height; }
    // The damage gathered since the last take, with the buffer to upload it from (nullopt when
    // there is nothing to upload).
    std::optional<Upload> take_upload();
    const CursorView& cursor() const { return m_cursor; }
    uint64_t generation() const { return m_generation; }
    uint64_t flips() const { return m_flips; } // FLIP records applied
    uint64_t covered() const { return m_covered; } // generations they stood for
    std::string revoked_reason() const { return m_revoked; }
    size_t buffers() const { return m_buffers.size(); }

private:
    std::map<uint32_t, ex::MappedBuffer> m_buffers;
    ex::BufferAssembler m_assembler; // a GUEST_MEMORY buffer waiting for its extents
    bool m_enabled = false;
    uint32_t m_width = 0, m_height = 0;
    uint32_t m_shown = 0; // the buffer of the last FLIP
    ex::Rect32 m_source {};
    std::vector<ex::Rect32> m_damage;
    CursorView m_cursor;
    uint32_t m_cursor_buffer = 0;
    uint64_t m_generation = 0, m_flips = 0, m_covered = 0;
    std::string m_revoked;
};

// The channels of a DRM fourcc as masks of a 32-bit pixel (SDL_MasksToPixelFormatEnum takes
// them), for the formats virtio-gpu has; nullopt for any other.
struct ChannelMasks {
    uint32_t r, g, b, a;
    bool operator==(const ChannelMasks&) const = default;
};
std::optional<ChannelMasks> channel_masks(uint32_t fourcc);

} // namespace vgpu::view
