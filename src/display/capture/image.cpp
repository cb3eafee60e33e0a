#include "display/capture/image.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include "base/crc32c.h"
#include "base/fd.h"

namespace vgpu::display::capture {

namespace {

// Limits for images we read: far above any scanout (4095x4095), low enough that a hostile or
// corrupt header cannot make us allocate gigabytes before the data runs out.
constexpr uint64_t MAX_SIDE = 16384;
constexpr uint64_t MAX_PIXELS = uint64_t(1) << 26;
constexpr size_t MAX_FILE_BYTES = size_t(1) << 30;

Result<void> check_size(
    const std::string& path, std::string_view kind, uint64_t width, uint64_t height)
{
    if (width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE
        || width * height > MAX_PIXELS)
        return Error::format("{}: {} size {}x{} is not supported (1x1 up to {}x{} and {} pixels)",
            path, kind, width, height, MAX_SIDE, MAX_SIDE, MAX_PIXELS);
    return {};
}

bool is_space(std::byte b)
{
    char c = char(b);
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_digit(std::byte b) { return char(b) >= '0' && char(b) <= '9'; }

// Netpbm header fields: decimal numbers separated by whitespace, where a '#' starts a comment
// that runs to the end of the line.
bool ppm_number(std::span<const std::byte> data, size_t& pos, uint64_t& value)
{
    for (;;) {
        while (pos < data.size() && is_space(data[pos]))
            ++pos;
        if (pos >= data.size() || char(data[pos]) != '#')
            break;
        while (pos < data.size() && char(data[pos]) != '\n')
            ++pos;
    }
    size_t start = pos;
    value = 0;
    while (pos < data.size() && is_digit(data[pos])) {
        if (pos - start >= 9) // no field of ours needs more digits; this also bounds `value`
            return false;
        value = value * 10 + uint64_t(char(data[pos]) - '0');
        ++pos;
    }
    return pos > start;
}

Result<Image> decode_ppm(std::span<const std::byte> data, const std::string& path)
{
    size_t pos = 2; // after "P6"
    uint64_t width = 0, height = 0, maxval = 0;
    if (pos >= data.size() || !is_space(data[pos]))
        return Error::format("{}: malformed PPM header (no whitespace after P6)", path);
    if (!ppm_number(data, pos, width) || !ppm_number(data, pos, height)
        || !ppm_number(data, pos, maxval))
        return Error::format("{}: malformed or truncated PPM header", path);
    if (maxval != 255)
        return Error::format("{}: PPM maxval {} is not supported (only 255)", path, maxval);
    TRY(check_size(path, "PPM", width, height));
    // Exactly one whitespace byte separates maxval from the raster.
    if (pos >= data.size() || !is_space(data[pos]))
        return Error::format("{}: malformed or truncated PPM header", path);
    ++pos;
    uint64_t need = width * height * 3;
    if (data.size() - pos < need)
        return Error::format(
            "{}: PPM raster truncated ({} of {} bytes)", path, data.size() - pos, need);
    Image image { uint32_t(width), uint32_t(height),
        std::vector<uint32_t>(size_t(width * height)) };
    const auto* p = reinterpret_cast<const uint8_t*>(data.data() + pos);
    for (size_t i = 0; i < image.pixels.size(); ++i, p += 3)
        image.pixels[i] = (uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2];
    return image;
}

// ---- libpng ------------------------------------------------------------------------------------
// libpng reports errors by longjmp. The functions that call setjmp (png_decode, png_encode) hold
// only trivially destructible locals, and anything they change after setjmp and use after the
// longjmp is volatile, so a longjmp neither skips a destructor nor reads a clobbered register.

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

template <typename State>
void png_error_callback(png_structp png, png_const_charp message)
{
    auto* state = static_cast<State*>(png_get_error_ptr(png));
    std::snprintf(state->message, sizeof(state->message), "%s", message);
    png_longjmp(png, 1);
}

void png_warning_callback(png_structp, png_const_charp) { }

// Decodes to 8-bit RGB rows in the buffer that `allocate` provides once the header is known (it
// returns nullptr to refuse the size).
using RgbAllocator = uint8_t* (*)(void* context, PngReadState& state, uint32_t width,
    uint32_t height);

bool png_decode(PngReadState& state, RgbAllocator allocate, void* context)
{
    png_structp png = png_create_read_struct(
        PNG_LIBPNG_VER_STRING, &state, png_error_callback<PngReadState>, png_warning_callback);
    if (!png)
        return false;
    png_infop info = png_create_info_struct(png);
    png_bytep* volatile rows = nullptr;
    if (!info || setjmp(png_jmpbuf(png))) {
        std::free(rows);
        png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
        return false;
    }
    png_set_read_fn(png, &state, png_read_callback);
    png_read_info(png, info);
    // Everything to 8-bit RGB: palettes and low bit depths expanded, 16 bits stripped to 8, grey
    // to RGB, alpha (and a tRNS chunk, which png_set_expand turns into alpha) dropped.
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    uint32_t width = png_get_image_width(png, info);
    uint32_t height = png_get_image_height(png, info);
    if (png_get_rowbytes(png, info) != size_t(width) * 3)
        png_error(png, "unexpected row layout after the transforms");
    uint8_t* rgb = allocate(context, state, width, height);
    if (!rgb)
        png_longjmp(png, 1);
    rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * height));
    if (!rows)
        png_error(png, "out of memory");
    for (uint32_t y = 0; y < height; ++y)
        rows[y] = rgb + size_t(y) * width * 3;
    png_read_image(png, rows);
    // Up to IEND: a file cut anywhere, even after the last pixel, is reported as truncated.
    png_read_end(png, nullptr);
    std::free(rows);
    rows = nullptr;
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
}

struct PngTarget {
    const std::string* path;
    Image image;
    std::vector<uint8_t> rgb;
    std::string refusal; // why allocate_rgb refused the size
};

uint8_t* allocate_rgb(void* context, PngReadState&, uint32_t width, uint32_t height)
{
    auto* target = static_cast<PngTarget*>(context);
    if (auto ok = check_size(*target->path, "PNG", width, height); !ok) {
        target->refusal = ok.error().message;
        return nullptr;
    }
    target->image.width = width;
    target->image.height = height;
    target->rgb.resize(size_t(width) * height * 3);
    return target->rgb.data();
}

Result<Image> decode_png(std::span<const std::byte> data, const std::string& path)
{
    PngReadState state { data, 0, {} };
    PngTarget target { &path, {}, {}, {} };
    if (!png_decode(state, allocate_rgb, &target)) {
        if (!target.refusal.empty())
            return Error { target.refusal, 0 };
        return Error::format(
            "{}: unreadable PNG: {}", path, state.message[0] ? state.message : "libpng failed");
    }
    Image image = std::move(target.image);
    image.pixels.resize(size_t(image.width) * image.height);
    const uint8_t* p = target.rgb.data();
    for (size_t i = 0; i < image.pixels.size(); ++i, p += 3)
        image.pixels[i] = (uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2];
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

bool png_encode(PngWriteState& state, uint32_t width, uint32_t height, const uint8_t* rgb)
{
    png_structp png = png_create_write_struct(
        PNG_LIBPNG_VER_STRING, &state, png_error_callback<PngWriteState>, png_warning_callback);
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
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
        PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; ++y)
        png_write_row(png, rgb + size_t(y) * width * 3);
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
    if (image.width == 0 || image.height == 0
        || image.pixels.size() != size_t(image.width) * image.height)
        return Error::format("image {}x{} with {} pixels is malformed", image.width, image.height,
            image.pixels.size());
    return {};
}

Result<void> write_all(int fd, std::span<const std::byte> bytes, const std::string& path)
{
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::from_errno(fmt::format("write {}", path));
        bytes = bytes.subspan(size_t(n));
    }
    return {};
}

} // namespace

Result<Image> read_image(const std::string& path)
{
    auto data = TRY(read_whole_file(path, MAX_FILE_BYTES));
    static constexpr unsigned char png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
        '\n' };
    if (data.size() >= 8 && std::memcmp(data.data(), png_signature, 8) == 0)
        return decode_png(data, path);
    if (data.size() >= 2 && char(data[0]) == 'P' && char(data[1]) == '6')
        return decode_ppm(data, path);
    if (data.empty())
        return Error::format("{}: empty file", path);
    if (data.size() >= 2 && char(data[0]) == 'P' && char(data[1]) >= '1' && char(data[1]) <= '7')
        return Error::format(
            "{}: netpbm P{} is not supported (only binary PPM, P6)", path, char(data[1]));
    return Error::format("{}: neither PNG nor binary PPM (P6)", path);
}

Result<std::vector<std::byte>> encode_png(const Image& image)
{
    TRY(check(image));
    std::vector<std::byte> out;
    PngWriteState state { &out, {} };
    auto rgb = to_rgb(image);
    if (!png_encode(state, image.width, image.height, rgb.data()))
        return Error::format(
            "PNG encoding failed: {}", state.message[0] ? state.message : "libpng failed");
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

namespace {
// A new file next to `path`, never following a link: O_CREAT | O_EXCL fails on anything that
// exists, a planted symlink included, and O_NOFOLLOW says so twice.
Result<std::pair<Fd, std::string>> create_temporary(const std::string& path)
{
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    static constexpr char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::random_device random;
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string suffix;
        for (int k = 0; k < 8; ++k)
            suffix += letters[random() % (sizeof(letters) - 1)];
        std::string name = slash == std::string::npos ? "" : dir;
        name += ".";
        name += base;
        name += ".";
        name += suffix;
        int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0)
            return std::pair { Fd(fd), name };
        if (errno != EEXIST)
            return Error::from_errno(fmt::format("create a temporary file in {}", dir));
    }
    return Error::format("create a temporary file in {}: all names taken", dir);
}
} // namespace

Result<void> write_file(const std::string& path, std::span<const std::byte> bytes)
{
    // What exists at the path is replaced only if it is a regular file: not through a link,
    // not over a directory, a FIFO or a device. (rename() replaces a link itself, never its
    // target; the check makes the refusal explicit.)
    struct stat st { };
    if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        return Error::format("{} exists and is not a regular file", path);
    auto [fd, temporary] = TRY(create_temporary(path));
    auto written = write_all(fd.get(), bytes, temporary);
    if (written && ::close(fd.release()) < 0)
        written = Error::from_errno(fmt::format("close {}", temporary));
    if (!written) {
        ::unlink(temporary.c_str());
        return written;
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        auto error = Error::from_errno(fmt::format("rename {} to {}", temporary, path));
        ::unlink(temporary.c_str());
        return error;
    }
    return {};
}

uint32_t image_crc(const Image& image)
{
    // Row by row, as capture computes a frame; rows are contiguous here, so this is also the CRC
    // of all pixels in one run.
    uint32_t crc = 0;
    if (image.pixels.size()
        < size_t(image.width) * image.height) // malformed: never read past the end
        return image.pixels.empty() ? 0
                                    : crc::crc32c_xrgb(0, image.pixels.data(), image.pixels.size());
    for (uint32_t y = 0; y < image.height; ++y)
        crc = crc::crc32c_xrgb(crc, image.pixels.data() + size_t(y) * image.width, image.width);
    return crc;
}

std::string drm_crc_line(uint64_t frame, uint32_t crc)
{
    // drm_debugfs_crc.c prints the frame counter as a 32-bit value.
    return fmt::format("0x{:08x} 0x{:08x}", uint32_t(frame), crc);
}

} // namespace vgpu::display::capture
