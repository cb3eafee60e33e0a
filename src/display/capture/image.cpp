#include "display/capture/image.h"

#include <png.h>
#include <unistd.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/crc32c.h"

namespace vgpu::display::capture {

namespace {

Result<std::vector<std::byte>> read_whole(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error::from_errno(fmt::format("open {}", path));
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(bytes.size());
    if (!bytes.empty())
        std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

// PPM header tokens, skipping whitespace and # comments.
bool ppm_token(std::span<const std::byte> data, size_t& pos, uint64_t& value)
{
    for (;;) {
        while (pos < data.size() && std::isspace(int(data[pos])))
            ++pos;
        if (pos < data.size() && char(data[pos]) == '#') {
            while (pos < data.size() && char(data[pos]) != '\n')
                ++pos;
            continue;
        }
        break;
    }
    size_t start = pos;
    value = 0;
    while (pos < data.size() && std::isdigit(int(data[pos])) && pos - start < 10)
        value = value * 10 + uint64_t(int(data[pos++]) - '0');
    return pos > start;
}

Result<Image> decode_ppm(std::span<const std::byte> data, const std::string& path)
{
    size_t pos = 2;
    uint64_t width, height, maxval;
    if (!ppm_token(data, pos, width) || !ppm_token(data, pos, height) || !ppm_token(data, pos, maxval))
        return Error::format("{}: malformed PPM header", path);
    if (maxval != 255)
        return Error::format("{}: PPM maxval {} is not supported (only 255)", path, maxval);
    if (width == 0 || height == 0 || width > 65535 || height > 65535)
        return Error::format("{}: PPM size {}x{} out of range", path, width, height);
    if (pos >= data.size() || !std::isspace(int(data[pos])))
        return Error::format("{}: malformed PPM header", path);
    ++pos; // the single whitespace byte before the raster
    uint64_t need = width * height * 3;
    if (data.size() - pos < need)
        return Error::format("{}: PPM raster truncated ({} of {} bytes)", path, data.size() - pos, need);
    Image image { uint32_t(width), uint32_t(height), std::vector<uint32_t>(size_t(width * height)) };
    const auto* p = reinterpret_cast<const uint8_t*>(data.data() + pos);
    for (size_t i = 0; i < image.pixels.size(); ++i, p += 3)
        image.pixels[i] = (uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2];
    return image;
}

struct PngReadState {
    std::span<const std::byte> data;
    size_t pos = 0;
    char message[256] = {};
};

void png_read_callback(png_structp png, png_bytep out, png_size_t length)
{
    auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
    if (state->data.size() - state->pos < length)
        png_error(png, "file truncated");
    std::memcpy(out, state->data.data() + state->pos, length);
    state->pos += length;
}

void png_error_callback(png_structp png, png_const_charp message)
{
    auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
    std::snprintf(state->message, sizeof(state->message), "%s", message);
    png_longjmp(png, 1);
}

void png_warning_callback(png_structp, png_const_charp) { }

// All libpng work in one function without C++ objects across setjmp: the rows land in `rgb`,
// sized by the caller after reading the header through `width`/`height`.
bool png_decode(PngReadState& state, uint32_t& width, uint32_t& height, std::vector<uint8_t>* rgb)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_callback, png_warning_callback);
    if (!png)
        return false;
    png_infop info = png_create_info_struct(png);
    png_bytep* rows = nullptr;
    if (!info || setjmp(png_jmpbuf(png))) {
        std::free(rows);
        png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
        return false;
    }
    png_set_read_fn(png, &state, png_read_callback);
    png_read_info(png, info);
    width = png_get_image_width(png, info);
    height = png_get_image_height(png, info);
    if (width == 0 || height == 0 || width > 65535 || height > 65535)
        png_error(png, "image size out of range");
    // Everything to 8-bit RGB: palettes expanded, grey to RGB, 16-bit stripped, alpha dropped.
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != size_t(width) * 3)
        png_error(png, "unexpected row layout");
    rgb->resize(size_t(width) * height * 3);
    rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * height));
    if (!rows)
        png_error(png, "out of memory");
    for (uint32_t y = 0; y < height; ++y)
        rows[y] = rgb->data() + size_t(y) * width * 3;
    png_read_image(png, rows);
    std::free(rows);
    rows = nullptr;
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
}

Result<Image> decode_png(std::span<const std::byte> data, const std::string& path)
{
    PngReadState state { data, 0, {} };
    uint32_t width = 0, height = 0;
    std::vector<uint8_t> rgb;
    if (!png_decode(state, width, height, &rgb))
        return Error::format("{}: not a readable PNG ({})", path, state.message[0] ? state.message : "libpng failed");
    Image image { width, height, std::vector<uint32_t>(size_t(width) * height) };
    for (size_t i = 0; i < image.pixels.size(); ++i)
        image.pixels[i] = (uint32_t(rgb[3 * i]) << 16) | (uint32_t(rgb[3 * i + 1]) << 8) | rgb[3 * i + 2];
    return image;
}

struct PngWriteState {
    std::vector<std::byte>* out;
    char message[256] = {};
};

void png_write_callback(png_structp png, png_bytep data, png_size_t length)
{
    auto* state = static_cast<PngWriteState*>(png_get_io_ptr(png));
    auto* bytes = reinterpret_cast<const std::byte*>(data);
    state->out->insert(state->out->end(), bytes, bytes + length);
}

void png_flush_callback(png_structp) { }

void png_write_error_callback(png_structp png, png_const_charp message)
{
    auto* state = static_cast<PngWriteState*>(png_get_error_ptr(png));
    std::snprintf(state->message, sizeof(state->message), "%s", message);
    png_longjmp(png, 1);
}

bool png_encode(PngWriteState& state, const Image& image, const uint8_t* rgb)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_write_error_callback, png_warning_callback);
    if (!png)
        return false;
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : nullptr);
        return false;
    }
    png_set_write_fn(png, &state, png_write_callback, png_flush_callback);
    // Fast compression: screendumps are taken while the guest runs.
    png_set_compression_level(png, 1);
    png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
        PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < image.height; ++y)
        png_write_row(png, const_cast<png_bytep>(rgb + size_t(y) * image.width * 3));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

std::vector<uint8_t> to_rgb(const Image& image)
{
    std::vector<uint8_t> rgb(image.pixels.size() * 3);
    for (size_t i = 0; i < image.pixels.size(); ++i) {
        rgb[3 * i] = uint8_t(image.pixels[i] >> 16);
        rgb[3 * i + 1] = uint8_t(image.pixels[i] >> 8);
        rgb[3 * i + 2] = uint8_t(image.pixels[i]);
    }
    return rgb;
}

Result<void> check(const Image& image)
{
    if (image.width == 0 || image.height == 0 || image.pixels.size() != size_t(image.width) * image.height)
        return Error::format("image {}x{} with {} pixels is malformed", image.width, image.height, image.pixels.size());
    return {};
}

} // namespace

Result<Image> read_image(const std::string& path)
{
    auto data = TRY(read_whole(path));
    static constexpr unsigned char png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    if (data.size() >= 8 && std::memcmp(data.data(), png_signature, 8) == 0)
        return decode_png(data, path);
    if (data.size() >= 2 && char(data[0]) == 'P' && char(data[1]) == '6')
        return decode_ppm(data, path);
    return Error::format("{}: neither PNG nor binary PPM (P6)", path);
}

Result<std::vector<std::byte>> encode_png(const Image& image)
{
    TRY(check(image));
    std::vector<std::byte> out;
    PngWriteState state { &out, {} };
    auto rgb = to_rgb(image);
    if (!png_encode(state, image, rgb.data()))
        return Error::format("PNG encoding failed: {}", state.message);
    return out;
}

Result<std::vector<std::byte>> encode_ppm(const Image& image)
{
    TRY(check(image));
    auto header = fmt::format("P6\n{} {}\n255\n", image.width, image.height);
    std::vector<std::byte> out(header.size() + image.pixels.size() * 3);
    std::memcpy(out.data(), header.data(), header.size());
    auto rgb = to_rgb(image);
    std::memcpy(out.data() + header.size(), rgb.data(), rgb.size());
    return out;
}

Result<void> write_file(const std::string& path, std::span<const std::byte> bytes)
{
    std::string temporary = path + ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out)
            return Error::from_errno(fmt::format("open {}", temporary));
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        if (!out)
            return Error::from_errno(fmt::format("write {}", temporary));
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        auto error = Error::from_errno(fmt::format("rename to {}", path));
        ::unlink(temporary.c_str());
        return error;
    }
    return {};
}

uint32_t image_crc(const Image& image) { return crc::crc32c_xrgb(0, image.pixels.data(), image.pixels.size()); }

std::string drm_crc_line(uint64_t frame, uint32_t crc) { return fmt::format("0x{:08x} 0x{:08x}", uint32_t(frame), crc); }

} // namespace vgpu::display::capture
