#include "display/capture/frame.h"

#include "virtio_gpu/formats.h"

namespace vgpu::display::capture {

Result<Image> grab(const Output& output)
{
    if (!output.source)
        return Error::format("output {} is disabled", output.index);
    const auto& source = *output.source;
    Image image;
    image.width = source.rect.width;
    image.height = source.rect.height;
    image.pixels.resize(size_t(image.width) * image.height);
    for (uint32_t y = 0; y < image.height; ++y)
        virtio_gpu::canonical_row(source.pixel(0, y), image.width, source.format,
            image.pixels.data() + size_t(y) * image.width);
    return image;
}

} // namespace vgpu::display::capture
