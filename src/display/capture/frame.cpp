#include "display/capture/frame.h"

#include <cstring>

#include "virtio_gpu/formats.h"

namespace vgpu::display::capture {

Result<Snapshot> take_snapshot(const Output& output)
{
    if (!output.source)
        return Error::format("output {} is disabled", output.index);
    const auto& source = *output.source;
    Snapshot snapshot { source.rect.width, source.rect.height, source.format, {} };
    const size_t row_bytes = size_t(snapshot.width) * virtio_gpu::BYTES_PER_PIXEL;
    snapshot.rows.resize(row_bytes * snapshot.height);
    for (uint32_t y = 0; y < snapshot.height; ++y)
        std::memcpy(snapshot.rows.data() + y * row_bytes, source.pixel(0, y), row_bytes);
    return snapshot;
}

Image to_image(const Snapshot& snapshot)
{
    Image image;
    image.width = snapshot.width;
    image.height = snapshot.height;
    image.pixels.resize(size_t(image.width) * image.height);
    const size_t row_bytes = size_t(snapshot.width) * virtio_gpu::BYTES_PER_PIXEL;
    for (uint32_t y = 0; y < image.height; ++y)
        virtio_gpu::canonical_row(snapshot.rows.data() + y * row_bytes, image.width,
            snapshot.format, image.pixels.data() + size_t(y) * image.width);
    return image;
}

Result<Image> grab(const Output& output) { return to_image(TRY(take_snapshot(output))); }

} // namespace vgpu::display::capture
