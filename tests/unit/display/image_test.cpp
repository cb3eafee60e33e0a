#include <gtest/gtest.h>

#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "display/capture/image.h"
#include "harness/backend_process.h"

namespace vgpu::display::capture {
namespace {

// A bit-by-bit CRC-32C reference, independent of the implementation's tables and instructions.
uint32_t reference_crc32c(const std::vector<uint8_t>& data)
{
    uint32_t crc = 0xFFFFFFFF;
    for (uint8_t b : data) {
        crc ^= b;
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
    }
    return ~crc;
}

// The canonical bytes the capture CRC covers: each pixel as 0x00RRGGBB little-endian, i.e.
// B, G, R, 0.
std::vector<uint8_t> canonical_bytes(const Image& image)
{
    std::vector<uint8_t> out;
    for (uint32_t p : image.pixels) {
        out.push_back(uint8_t(p));
        out.push_back(uint8_t(p >> 8));
        out.push_back(uint8_t(p >> 16));
        out.push_back(0);
    }
    return out;
}

Image random_image(uint32_t width, uint32_t height, uint32_t seed, bool junk_top_byte = false)
{
    std::mt19937 rng(seed);
    Image image { width, height, std::vector<uint32_t>(size_t(width) * height) };
    for (auto& p : image.pixels)
        p = junk_top_byte ? uint32_t(rng()) : uint32_t(rng()) & 0xFFFFFF;
    return image;
}

std::vector<uint32_t> without_top_byte(std::vector<uint32_t> pixels)
{
    for (auto& p : pixels)
        p &= 0xFFFFFF;
    return pixels;
}

class ImageTest : public ::testing::Test {
protected:
    void SetUp() override { m_dir = harness::make_temp_dir(); }
    void TearDown() override { std::filesystem::remove_all(m_dir); }

    std::string path(const std::string& name) const { return m_dir + "/" + name; }

    std::string write_bytes(const std::string& name, std::span<const std::byte> bytes) const
    {
        std::ofstream out(path(name), std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        return path(name);
    }
    std::string write_text(const std::string& name, const std::string& text) const
    {
        return write_bytes(name, std::as_bytes(std::span(text.data(), text.size())));
    }

    std::string m_dir;
};

// ---- PNGs in other layouts, written with libpng directly
// -----------------------------------------

struct PngSpec {
    uint32_t width = 0;
    uint32_t height = 0;
    int color_type = PNG_COLOR_TYPE_RGB;
    int bit_depth = 8;
    int interlace = PNG_INTERLACE_NONE;
    std::vector<uint8_t> data; // packed rows as libpng expects them for this layout
    std::vector<png_color> palette;
    std::vector<uint8_t> trns; // palette alpha
};

// No C++ objects live in this frame across setjmp: the caller owns the spec and the FILE.
bool write_png_file(std::FILE* file, const PngSpec& spec)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    if (!png)
        return false;
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : nullptr);
        return false;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, spec.width, spec.height, spec.bit_depth, spec.color_type,
        spec.interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (!spec.palette.empty())
        png_set_PLTE(png, info, spec.palette.data(), int(spec.palette.size()));
    if (!spec.trns.empty())
        png_set_tRNS(png, info, spec.trns.data(), int(spec.trns.size()), nullptr);
    png_write_info(png, info);
    if (spec.bit_depth == 16)
        png_set_swap(png); // our rows hold 16-bit samples in host (little-endian) order
    size_t stride = spec.data.size() / spec.height;
    int passes = png_set_interlace_handling(png);
    for (int pass = 0; pass < passes; ++pass)
        for (uint32_t y = 0; y < spec.height; ++y)
            png_write_row(png, spec.data.data() + y * stride);
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

void write_png(const std::string& path, const PngSpec& spec)
{
    std::FILE* file = std::fopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    bool ok = write_png_file(file, spec);
    std::fclose(file);
    ASSERT_TRUE(ok);
}

uint32_t rgb(uint32_t r, uint32_t g, uint32_t b) { return (r << 16) | (g << 8) | b; }

// ---- round trips
// ---------------------------------------------------------------------------------

TEST_F(ImageTest, EncodePng_ReadBack_SamePixels)
{
    auto image = random_image(37, 23, 1);
    auto png = encode_png(image);
    ASSERT_TRUE(png) << png.error().message;
    ASSERT_TRUE(write_file(path("a.png"), *png));

    auto read = read_image(path("a.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->width, 37u);
    EXPECT_EQ(read->height, 23u);
    EXPECT_EQ(read->pixels, image.pixels);
}

TEST_F(ImageTest, EncodePpm_ReadBack_SamePixelsAndHeader)
{
    auto image = random_image(5, 3, 2);
    auto ppm = encode_ppm(image);
    ASSERT_TRUE(ppm);
    std::string header(reinterpret_cast<const char*>(ppm->data()), 11);
    EXPECT_EQ(header, "P6\n5 3\n255\n");
    EXPECT_EQ(ppm->size(), 11u + 5 * 3 * 3);
    ASSERT_TRUE(write_file(path("a.ppm"), *ppm));

    auto read = read_image(path("a.ppm"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->width, 5u);
    EXPECT_EQ(read->height, 3u);
    EXPECT_EQ(read->pixels, image.pixels);
}

TEST_F(ImageTest, Encode_TopByteSet_IsDropped)
{
    auto image = random_image(8, 8, 3, true);

    auto from_png = read_image(write_bytes("a.png", *encode_png(image)));
    auto from_ppm = read_image(write_bytes("a.ppm", *encode_ppm(image)));

    ASSERT_TRUE(from_png);
    ASSERT_TRUE(from_ppm);
    EXPECT_EQ(from_png->pixels, without_top_byte(image.pixels));
    EXPECT_EQ(from_ppm->pixels, without_top_byte(image.pixels));
}

TEST_F(ImageTest, Encode_MalformedImage_Fails)
{
    Image image { 4, 4, std::vector<uint32_t>(3) };

    EXPECT_FALSE(encode_png(image));
    EXPECT_FALSE(encode_ppm(image));
    EXPECT_FALSE(encode_png(Image {}));
}

// ---- PNG layouts
// ---------------------------------------------------------------------------------

TEST_F(ImageTest, ReadPng_Rgba_AlphaIgnored)
{
    PngSpec spec { 2, 1, PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE,
        { 10, 20, 30, 0, 40, 50, 60, 255 }, {}, {} };
    write_png(path("rgba.png"), spec);

    auto read = read_image(path("rgba.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, (std::vector<uint32_t> { rgb(10, 20, 30), rgb(40, 50, 60) }));
}

TEST_F(ImageTest, ReadPng_Rgba16_StrippedTo8Bits)
{
    // 16-bit samples, little-endian in `data` (the writer swaps): 0x1234 -> 0x12.
    PngSpec spec { 1, 1, PNG_COLOR_TYPE_RGBA, 16, PNG_INTERLACE_NONE,
        { 0x34, 0x12, 0x78, 0x56, 0xbc, 0x9a, 0x00, 0x00 }, {}, {} };
    write_png(path("rgba16.png"), spec);

    auto read = read_image(path("rgba16.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, std::vector<uint32_t> { rgb(0x12, 0x56, 0x9a) });
}

TEST_F(ImageTest, ReadPng_Gray8_BecomesRgb)
{
    PngSpec spec { 3, 1, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, { 0, 128, 255 }, {}, {} };
    write_png(path("gray.png"), spec);

    auto read = read_image(path("gray.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, (std::vector<uint32_t> { 0, rgb(128, 128, 128), 0xFFFFFF }));
}

TEST_F(ImageTest, ReadPng_GrayAlpha_AlphaIgnored)
{
    PngSpec spec { 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, { 7, 0, 200, 99 }, {},
        {} };
    write_png(path("ga.png"), spec);

    auto read = read_image(path("ga.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, (std::vector<uint32_t> { rgb(7, 7, 7), rgb(200, 200, 200) }));
}

TEST_F(ImageTest, ReadPng_Gray1Bit_ExpandedToFullRange)
{
    // 10 pixels of 1 bit: 1010110011 -> two bytes, padded.
    PngSpec spec { 10, 1, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, { 0b10101100, 0b11000000 },
        {}, {} };
    write_png(path("bits.png"), spec);

    auto read = read_image(path("bits.png"));

    ASSERT_TRUE(read) << read.error().message;
    std::vector<uint32_t> expected;
    for (int bit : { 1, 0, 1, 0, 1, 1, 0, 0, 1, 1 })
        expected.push_back(bit ? 0xFFFFFF : 0);
    EXPECT_EQ(read->pixels, expected);
}

TEST_F(ImageTest, ReadPng_PaletteWithTransparency_ColoursKeptAlphaIgnored)
{
    PngSpec spec { 4, 1, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, { 0x01, 0x23 },
        { { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 }, { 1, 2, 3 } }, { 0, 128 } };
    write_png(path("palette.png"), spec);

    auto read = read_image(path("palette.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, (std::vector<uint32_t> { 0xFF0000, 0x00FF00, 0x0000FF, rgb(1, 2, 3) }));
}

TEST_F(ImageTest, ReadPng_Interlaced_SameAsPlain)
{
    auto image = random_image(13, 11, 4);
    PngSpec spec { 13, 11, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, {}, {}, {} };
    for (uint32_t p : image.pixels)
        spec.data.insert(spec.data.end(), { uint8_t(p >> 16), uint8_t(p >> 8), uint8_t(p) });
    write_png(path("adam7.png"), spec);

    auto read = read_image(path("adam7.png"));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, image.pixels);
}

// ---- PPM headers
// ---------------------------------------------------------------------------------

TEST_F(ImageTest, ReadPpm_CommentsInHeader_Accepted)
{
    std::string file = "P6\n# made by hand\n2 # width\n1\n# maxval next\n255\n";
    file += std::string("\x01\x02\x03\xff\xfe\xfd", 6);

    auto read = read_image(write_text("c.ppm", file));

    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->pixels, (std::vector<uint32_t> { 0x010203, 0xfffefd }));
}

TEST_F(ImageTest, ReadPpm_Maxval65535_FailsNamingMaxval)
{
    auto read = read_image(write_text("deep.ppm", "P6 1 1 65535\n\0\0\0\0\0\0"));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("maxval 65535"), std::string::npos) << read.error().message;
}

TEST_F(ImageTest, ReadPpm_AsciiP3_FailsAsUnsupported)
{
    auto read = read_image(write_text("ascii.ppm", "P3\n1 1\n255\n1 2 3\n"));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("P3 is not supported"), std::string::npos)
        << read.error().message;
}

TEST_F(ImageTest, ReadPpm_HugeSize_FailsBeforeAllocating)
{
    auto read = read_image(write_text("huge.ppm", "P6\n100000 100000\n255\n"));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("100000x100000"), std::string::npos)
        << read.error().message;
}

// ---- broken files
// --------------------------------------------------------------------------------

TEST_F(ImageTest, ReadPpm_TruncatedRaster_Fails)
{
    auto ppm = *encode_ppm(random_image(4, 4, 5));
    ppm.resize(ppm.size() - 1);

    auto read = read_image(write_bytes("short.ppm", ppm));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("truncated"), std::string::npos) << read.error().message;
    EXPECT_EQ(read.error().message.find('\n'), std::string::npos);
}

TEST_F(ImageTest, ReadPpm_TruncatedHeader_Fails)
{
    auto read = read_image(write_text("header.ppm", "P6\n4 4\n"));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("header"), std::string::npos) << read.error().message;
}

TEST_F(ImageTest, ReadPng_Truncated_Fails)
{
    auto png = *encode_png(random_image(64, 64, 6));
    png.resize(png.size() / 2);

    auto read = read_image(write_bytes("short.png", png));

    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message.rfind(path("short.png") + ": unreadable PNG", 0), 0u)
        << read.error().message;
}

TEST_F(ImageTest, ReadPng_CutInsideIend_Fails)
{
    auto png = *encode_png(random_image(8, 8, 12));
    png.resize(png.size() - 4); // the pixels are all there; IEND's CRC is not

    auto read = read_image(write_bytes("no-iend.png", png));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("truncated"), std::string::npos) << read.error().message;
}

TEST_F(ImageTest, ReadPng_CorruptedData_Fails)
{
    auto png = *encode_png(random_image(16, 16, 7));
    for (size_t i = 60; i < png.size() - 20; i += 7)
        png[i] ^= std::byte { 0x5a };

    auto read = read_image(write_bytes("corrupt.png", png));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("unreadable PNG"), std::string::npos)
        << read.error().message;
}

TEST_F(ImageTest, ReadPng_SignatureOnly_Fails)
{
    auto read = read_image(write_text("sig.png", "\x89PNG\r\n\x1a\n"));

    ASSERT_FALSE(read);
    EXPECT_NE(read.error().message.find("truncated"), std::string::npos) << read.error().message;
}

TEST_F(ImageTest, Read_Garbage_FailsNamingTheFormats)
{
    auto read = read_image(write_text("junk.bin", "GIF89a and then some"));

    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message, path("junk.bin") + ": neither PNG nor binary PPM (P6)");
}

TEST_F(ImageTest, Read_EmptyFile_Fails)
{
    auto read = read_image(write_text("empty.png", ""));

    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message, path("empty.png") + ": empty file");
}

TEST_F(ImageTest, Read_MissingFile_FailsWithErrno)
{
    auto read = read_image(path("missing.png"));

    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message, path("missing.png") + ": No such file or directory");
}

TEST_F(ImageTest, Read_Directory_Fails)
{
    auto read = read_image(m_dir);

    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message, m_dir + ": is a directory");
}

// ---- write_file
// ----------------------------------------------------------------------------------

TEST_F(ImageTest, WriteFile_Replaces_LeavesNoTemporary)
{
    std::vector<std::byte> first(10, std::byte { 1 }), second(3, std::byte { 2 });
    ASSERT_TRUE(write_file(path("out"), first));

    ASSERT_TRUE(write_file(path("out"), second));

    EXPECT_EQ(std::filesystem::file_size(path("out")), 3u);
    EXPECT_FALSE(std::filesystem::exists(path("out.tmp")));
}

TEST_F(ImageTest, WriteFile_MissingDirectory_FailsNamingThePath)
{
    std::vector<std::byte> bytes(3);

    auto written = write_file(path("no/such/dir/out.png"), bytes);

    ASSERT_FALSE(written);
    EXPECT_NE(written.error().message.find("no/such/dir/"), std::string::npos)
        << written.error().message;
}

std::string contents(const std::string& file)
{
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(ImageTest, WriteFile_TemporaryNameIsASymlink_ItsTargetIsUntouched)
{
    // Whoever can reach the control socket picks the path, but must not be able to make us
    // write through a link planted where the temporary file used to go (PATH.tmp).
    {
        std::ofstream(path("victim")) << "precious";
    }
    std::filesystem::create_symlink(path("victim"), path("shot.png.tmp"));
    std::vector<std::byte> bytes(5, std::byte { 'x' });

    ASSERT_TRUE(write_file(path("shot.png"), bytes));

    EXPECT_EQ(contents(path("victim")), "precious");
    EXPECT_EQ(contents(path("shot.png")), "xxxxx");
    EXPECT_TRUE(std::filesystem::is_symlink(path("shot.png.tmp")));
}

TEST_F(ImageTest, WriteFile_TargetThatIsNotARegularFile_IsRefused)
{
    {
        std::ofstream(path("victim")) << "precious";
    }
    std::filesystem::create_symlink(path("victim"), path("link.png"));
    std::filesystem::create_directory(path("dir.png"));
    ASSERT_EQ(::mkfifo(path("fifo.png").c_str(), 0600), 0);
    std::vector<std::byte> bytes(5, std::byte { 'x' });

    for (const char* name : { "link.png", "dir.png", "fifo.png" }) {
        auto written = write_file(path(name), bytes);
        ASSERT_FALSE(written) << name;
        EXPECT_NE(written.error().message.find("not a regular file"), std::string::npos)
            << written.error().message;
    }
    EXPECT_EQ(contents(path("victim")), "precious");
    EXPECT_TRUE(std::filesystem::is_symlink(path("link.png")));
    EXPECT_TRUE(std::filesystem::is_directory(path("dir.png")));
    EXPECT_TRUE(std::filesystem::is_fifo(path("fifo.png")));
    // No temporary file is left behind by a refusal or a success.
    ASSERT_TRUE(write_file(path("ok.png"), bytes));
    size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(m_dir))
        ++entries;
    EXPECT_EQ(entries, 5u); // victim, link.png, dir.png, fifo.png, ok.png and nothing else
}

// ---- CRC
// -----------------------------------------------------------------------------------------

TEST(ImageCrc, EqualsBitwiseReferenceOverCanonicalBytes)
{
    auto image = random_image(29, 17, 8);

    EXPECT_EQ(image_crc(image), reference_crc32c(canonical_bytes(image)));
}

TEST(ImageCrc, TopByteIgnored)
{
    auto image = random_image(16, 9, 9, true);
    Image clean { image.width, image.height, without_top_byte(image.pixels) };

    EXPECT_EQ(image_crc(image), image_crc(clean));
    EXPECT_EQ(image_crc(image), reference_crc32c(canonical_bytes(image)));
}

TEST(ImageCrc, RowByRowEqualsOneRunOverAllPixels)
{
    auto image = random_image(1023, 7, 10);

    EXPECT_EQ(image_crc(image), crc::crc32c_xrgb(0, image.pixels.data(), image.pixels.size()));
}

TEST(ImageCrc, KnownValue_OnePixel)
{
    // One white pixel: bytes ff ff ff 00.
    Image image { 1, 1, { 0xFFFFFF } };

    EXPECT_EQ(image_crc(image), reference_crc32c({ 0xff, 0xff, 0xff, 0x00 }));
}

TEST_F(ImageTest, Crc_SamePictureAsPngAndPpm_SameValue)
{
    auto image = random_image(40, 30, 11);
    auto png = read_image(write_bytes("p.png", *encode_png(image)));
    auto ppm = read_image(write_bytes("p.ppm", *encode_ppm(image)));
    ASSERT_TRUE(png);
    ASSERT_TRUE(ppm);

    EXPECT_EQ(image_crc(*png), image_crc(*ppm));
    EXPECT_EQ(image_crc(*png), image_crc(image));
}

TEST(DrmCrcLine, FormatsLikeDebugfs)
{
    EXPECT_EQ(drm_crc_line(5, 0xabc), "0x00000005 0x00000abc");
    EXPECT_EQ(drm_crc_line(0x1'0000'0007ull, 0xdeadbeef), "0x00000007 0xdeadbeef");
}

} // namespace
} // namespace vgpu::display::capture
