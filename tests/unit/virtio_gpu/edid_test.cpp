// The EDID generator (virtio_gpu/edid.h): the E-EDID 1.4 base block decoded back field by field,
// and the same blocks checked by Debian's edid-decode (package edid-decode) for conformance.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <ostream>
#include <string>

#include "virtio_gpu/edid.h"

namespace vgpu::virtio_gpu {
// Names the parameter in gtest's messages instead of dumping its bytes.
void PrintTo(const EdidInfo& info, std::ostream* out)
{
    *out << info.width << "x" << info.height << "@" << info.refresh_hz << " " << info.width_mm
         << "x" << info.height_mm << " mm, name \"" << info.name << "\", serial " << info.serial;
}

namespace {

constexpr size_t FIRST_DESCRIPTOR = 54;
constexpr size_t DESCRIPTOR_SIZE = 18;

// A detailed timing descriptor decoded independently of the generator (E-EDID 1.4 Table 3.21).
struct DecodedTiming {
    uint32_t pixel_clock_10khz;
    uint32_t h_active, h_blank, h_front_porch, h_sync;
    uint32_t v_active, v_blank, v_front_porch, v_sync;
    uint32_t width_mm, height_mm;
    uint8_t flags;

    double refresh_hz() const
    {
        return pixel_clock_10khz * 10'000.0
            / (double(h_active + h_blank) * double(v_active + v_blank));
    }
};

const uint8_t* descriptor(const std::vector<uint8_t>& edid, size_t index)
{
    return edid.data() + FIRST_DESCRIPTOR + index * DESCRIPTOR_SIZE;
}

DecodedTiming decode_timing(const uint8_t* d)
{
    DecodedTiming t {};
    t.pixel_clock_10khz = uint32_t { d[0] } | uint32_t { d[1] } << 8;
    t.h_active = d[2] | uint32_t(d[4] >> 4) << 8;
    t.h_blank = d[3] | uint32_t(d[4] & 0xF) << 8;
    t.v_active = d[5] | uint32_t(d[7] >> 4) << 8;
    t.v_blank = d[6] | uint32_t(d[7] & 0xF) << 8;
    t.h_front_porch = d[8] | uint32_t(d[11] >> 6) << 8;
    t.h_sync = d[9] | uint32_t((d[11] >> 4) & 0x3) << 8;
    t.v_front_porch = uint32_t(d[10] >> 4) | uint32_t((d[11] >> 2) & 0x3) << 4;
    t.v_sync = uint32_t(d[10] & 0xF) | uint32_t(d[11] & 0x3) << 4;
    t.width_mm = d[12] | uint32_t(d[14] >> 4) << 8;
    t.height_mm = d[13] | uint32_t(d[14] & 0xF) << 8;
    t.flags = d[17];
    return t;
}

// The 13-byte text of a display descriptor, up to its line feed.
std::string descriptor_text(const uint8_t* d)
{
    std::string text(reinterpret_cast<const char*>(d + 5), 13);
    return text.substr(0, text.find('\n'));
}

std::vector<uint8_t> build_or_fail(const EdidInfo& info)
{
    auto edid = build_edid(info);
    EXPECT_TRUE(edid.has_value()) << (edid.has_value() ? "" : edid.error().message);
    return edid.has_value() ? *edid : std::vector<uint8_t>(EDID_BLOCK_SIZE);
}

unsigned byte_sum(const std::vector<uint8_t>& edid)
{
    return std::accumulate(edid.begin(), edid.end(), 0u);
}

// ---- fixed fields -------------------------------------------------------------------------------

TEST(BuildEdid, Header_IsFixedPattern)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    std::vector<uint8_t> header(edid.begin(), edid.begin() + 8);
    EXPECT_EQ(header, (std::vector<uint8_t> { 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00 }));
}

TEST(BuildEdid, AnyMode_Is128BytesSummingToZero)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .serial = 42 });

    ASSERT_EQ(edid.size(), 128u);
    EXPECT_EQ(byte_sum(edid) % 256, 0u);
}

TEST(BuildEdid, Version_Is1Point4)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(edid[18], 1);
    EXPECT_EQ(edid[19], 4);
}

TEST(BuildEdid, ManufacturerId_DecodesToVgd)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    uint16_t code = static_cast<uint16_t>(edid[8] << 8 | edid[9]);
    std::string letters { char('A' - 1 + ((code >> 10) & 0x1F)),
        char('A' - 1 + ((code >> 5) & 0x1F)), char('A' - 1 + (code & 0x1F)) };
    EXPECT_EQ(code & 0x8000, 0);
    EXPECT_EQ(letters, "VGD");
}

TEST(BuildEdid, ManufactureDate_IsFixedWeekAndYearAfter2006)
{
    auto first = build_or_fail({ .width = 1024, .height = 768 });
    auto second = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(first, second);
    EXPECT_GE(first[16], 1);
    EXPECT_LE(first[16], 54);
    EXPECT_GE(1990 + first[17], 2006);
}

TEST(BuildEdid, VideoInput_IsDigital8BitsPerColourDisplayPort)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(edid[20] & 0x80, 0x80);
    EXPECT_EQ((edid[20] >> 4) & 0x7, 2); // 8 bits per primary
    EXPECT_EQ(edid[20] & 0xF, 5); // DisplayPort
}

TEST(BuildEdid, GammaAndFeatures_AreGamma22SrgbNativeContinuous)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(edid[23], 120); // (2.2 * 100) - 100
    EXPECT_EQ(edid[24], 0x07); // RGB 4:4:4, sRGB default, preferred is native, continuous frequency
}

TEST(BuildEdid, Chromaticity_IsSrgb)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    auto coordinate = [&](size_t high_byte, unsigned low_shift, size_t low_byte) {
        return ((edid[high_byte] << 2) | ((edid[low_byte] >> low_shift) & 0x3)) / 1024.0;
    };
    EXPECT_NEAR(coordinate(27, 6, 25), 0.640, 0.001); // red x
    EXPECT_NEAR(coordinate(28, 4, 25), 0.330, 0.001); // red y
    EXPECT_NEAR(coordinate(29, 2, 25), 0.300, 0.001); // green x
    EXPECT_NEAR(coordinate(30, 0, 25), 0.600, 0.001); // green y
    EXPECT_NEAR(coordinate(31, 6, 26), 0.150, 0.001); // blue x
    EXPECT_NEAR(coordinate(32, 4, 26), 0.060, 0.001); // blue y
    EXPECT_NEAR(coordinate(33, 2, 26), 0.3127, 0.001); // white x
    EXPECT_NEAR(coordinate(34, 0, 26), 0.3290, 0.001); // white y
}

TEST(BuildEdid, EstablishedAndStandardTimings_AreUnused)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(edid[35], 0);
    EXPECT_EQ(edid[36], 0);
    EXPECT_EQ(edid[37], 0);
    for (size_t i = 38; i < 54; ++i)
        EXPECT_EQ(edid[i], 0x01) << "byte " << i;
}

TEST(BuildEdid, ExtensionCount_IsZero)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    EXPECT_EQ(edid[126], 0);
}

// ---- screen size --------------------------------------------------------------------------------

TEST(BuildEdid, NoPhysicalSize_Uses96Dpi)
{
    auto edid = build_or_fail({ .width = 1920, .height = 1080 });

    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.width_mm, 508u); // 1920 / 96 * 25.4
    EXPECT_EQ(timing.height_mm, 286u); // 1080 / 96 * 25.4 = 285.75
    EXPECT_EQ(edid[21], 51);
    EXPECT_EQ(edid[22], 29);
}

TEST(BuildEdid, GivenPhysicalSize_IsUsedInCentimetresAndMillimetres)
{
    auto edid = build_or_fail({ .width = 1920, .height = 1080, .width_mm = 598, .height_mm = 336 });

    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.width_mm, 598u);
    EXPECT_EQ(timing.height_mm, 336u);
    EXPECT_EQ(edid[21], 60);
    EXPECT_EQ(edid[22], 34);
}

TEST(BuildEdid, OnlyWidthMm_DerivesHeightFromAspectRatio)
{
    auto edid = build_or_fail({ .width = 1920, .height = 1080, .width_mm = 600 });

    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.width_mm, 600u);
    EXPECT_EQ(timing.height_mm, 338u); // 600 * 1080 / 1920 = 337.5
}

TEST(BuildEdid, OnlyHeightMm_DerivesWidthFromAspectRatio)
{
    auto edid = build_or_fail({ .width = 1280, .height = 800, .height_mm = 200 });

    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.width_mm, 320u);
    EXPECT_EQ(timing.height_mm, 200u);
}

TEST(BuildEdid, OnePixelWideMode_ScreenSizeIsAtLeastOneCentimetre)
{
    auto edid = build_or_fail({ .width = 1, .height = 4095 });

    EXPECT_GE(edid[21], 1);
    EXPECT_GE(edid[22], 1);
}

TEST(BuildEdid, PhysicalSizeOver2554Mm_ReturnsError)
{
    auto edid = build_edid({ .width = 1920, .height = 1080, .width_mm = 2555, .height_mm = 1000 });

    EXPECT_FALSE(edid.has_value());
}

TEST(BuildEdid, DerivedPhysicalSizeOver2554Mm_ReturnsError)
{
    auto edid = build_edid({ .width = 4000, .height = 100, .height_mm = 100 });

    EXPECT_FALSE(edid.has_value());
}

// ---- descriptors --------------------------------------------------------------------------------

TEST(BuildEdid, NameDescriptor_IsNewlineTerminatedAndSpacePadded)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    const uint8_t* name = descriptor(edid, 1);
    EXPECT_EQ(name[0] | name[1] | name[2] | name[4], 0);
    EXPECT_EQ(name[3], 0xFC);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(name + 5), 13), "vgpu-display\n");
}

TEST(BuildEdid, ShortName_IsPaddedWithSpacesAfterNewline)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .name = "abc" });

    EXPECT_EQ(
        std::string(reinterpret_cast<const char*>(descriptor(edid, 1) + 5), 13), "abc\n         ");
}

TEST(BuildEdid, ThirteenCharacterName_HasNoNewline)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .name = "0123456789abc" });

    EXPECT_EQ(
        std::string(reinterpret_cast<const char*>(descriptor(edid, 1) + 5), 13), "0123456789abc");
}

TEST(BuildEdid, LongName_IsCutToThirteenCharacters)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .name = "vgpu-display-output-1" });

    EXPECT_EQ(descriptor_text(descriptor(edid, 1)), "vgpu-display-");
}

TEST(BuildEdid, NameCutBeforeSpace_DropsTrailingSpaces)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .name = "vgpu display output" });

    EXPECT_EQ(
        std::string(reinterpret_cast<const char*>(descriptor(edid, 1) + 5), 13), "vgpu display\n");
}

TEST(BuildEdid, EmptyName_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 768, .name = "" }).has_value());
}

TEST(BuildEdid, AllSpacesName_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 768, .name = "   " }).has_value());
}

TEST(BuildEdid, NonPrintableName_ReturnsError)
{
    auto edid = build_edid({ .width = 1024, .height = 768, .name = "bad\nname" });

    EXPECT_FALSE(edid.has_value());
}

TEST(BuildEdid, RangeLimits_ContainPreferredTiming)
{
    auto edid = build_or_fail({ .width = 1920, .height = 1080 });

    const uint8_t* range = descriptor(edid, 2);
    auto timing = decode_timing(descriptor(edid, 0));
    double line_khz = timing.pixel_clock_10khz * 10.0 / (timing.h_active + timing.h_blank);
    EXPECT_EQ(range[3], 0xFD);
    EXPECT_EQ(range[4], 0); // no rate offsets
    EXPECT_LE(range[5], timing.refresh_hz());
    EXPECT_GE(range[6], timing.refresh_hz());
    EXPECT_LE(range[7], line_khz);
    EXPECT_GE(range[8], line_khz);
    EXPECT_GE(range[9] * 1000u, timing.pixel_clock_10khz);
    EXPECT_EQ(range[10], 0x01); // range limits only
}

TEST(BuildEdid, ZeroSerial_LastDescriptorIsDummy)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768 });

    const uint8_t* last = descriptor(edid, 3);
    EXPECT_EQ(last[3], 0x10);
    EXPECT_EQ(edid[12] | edid[13] | edid[14] | edid[15], 0);
}

TEST(BuildEdid, Serial_IsStoredLittleEndianAndAsString)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .serial = 0x12345678 });

    EXPECT_EQ(edid[12], 0x78);
    EXPECT_EQ(edid[15], 0x12);
    EXPECT_EQ(descriptor(edid, 3)[3], 0xFF);
    EXPECT_EQ(descriptor_text(descriptor(edid, 3)), "305419896");
}

TEST(BuildEdid, LargestSerial_FitsTheStringDescriptor)
{
    auto edid = build_or_fail({ .width = 1024, .height = 768, .serial = 0xFFFFFFFF });

    EXPECT_EQ(descriptor_text(descriptor(edid, 3)), "4294967295");
}

// ---- preferred timing ---------------------------------------------------------------------------

TEST(BuildEdid, PreferredTiming1920x1080_MatchesCvtReducedBlanking)
{
    auto edid = build_or_fail({ .width = 1920, .height = 1080 });

    // CVT 1.2 reduced blanking 1920x1080@60: 2080 x 1111 total, 16:9 so a 5-line vsync.
    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.h_blank, 160u);
    EXPECT_EQ(timing.h_front_porch, 48u);
    EXPECT_EQ(timing.h_sync, 32u);
    EXPECT_EQ(timing.v_blank, 31u);
    EXPECT_EQ(timing.v_front_porch, 3u);
    EXPECT_EQ(timing.v_sync, 5u);
    EXPECT_EQ(timing.pixel_clock_10khz, 13866u); // 60 * 2080 * 1111 Hz, rounded up to 10 kHz
    EXPECT_EQ(timing.flags, 0x1A); // digital separate sync, +hsync -vsync
}

TEST(BuildEdid, PreferredTiming_UsesAspectRatioVsyncWidths)
{
    EXPECT_EQ(
        decode_timing(descriptor(build_or_fail({ .width = 1024, .height = 768 }), 0)).v_sync, 4u);
    EXPECT_EQ(
        decode_timing(descriptor(build_or_fail({ .width = 1280, .height = 800 }), 0)).v_sync, 6u);
    EXPECT_EQ(
        decode_timing(descriptor(build_or_fail({ .width = 1280, .height = 1024 }), 0)).v_sync, 7u);
    EXPECT_EQ(
        decode_timing(descriptor(build_or_fail({ .width = 1366, .height = 768 }), 0)).v_sync, 10u);
}

TEST(BuildEdid, VerticalBlanking_LastsAtLeast460Microseconds)
{
    auto edid = build_or_fail({ .width = 2560, .height = 1600, .refresh_hz = 120 });

    auto timing = decode_timing(descriptor(edid, 0));
    double line_us = (timing.h_active + timing.h_blank) / (timing.pixel_clock_10khz * 0.01);
    EXPECT_GE(timing.v_blank * line_us, 460.0);
    EXPECT_GE(timing.v_blank - timing.v_front_porch - timing.v_sync, 6u); // CVT minimum back porch
}

// "1920x1080at60": the parameterised tests' names.
template <typename T>
std::string mode_name(const ::testing::TestParamInfo<T>& param)
{
    return std::to_string(param.param.width) + "x" + std::to_string(param.param.height) + "at"
        + std::to_string(param.param.refresh_hz);
}

struct Mode {
    uint32_t width;
    uint32_t height;
    uint32_t refresh_hz;
};

class BuildEdidMode : public ::testing::TestWithParam<Mode> { };

TEST_P(BuildEdidMode, PreferredTiming_DecodesToRequestedSizeAndRefresh)
{
    const Mode mode = GetParam();

    auto edid = build_or_fail(
        { .width = mode.width, .height = mode.height, .refresh_hz = mode.refresh_hz });

    ASSERT_EQ(edid.size(), 128u);
    EXPECT_EQ(byte_sum(edid) % 256, 0u);
    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_NE(timing.pixel_clock_10khz, 0u);
    EXPECT_EQ(timing.h_active, mode.width);
    EXPECT_EQ(timing.v_active, mode.height);
    EXPECT_NEAR(timing.refresh_hz(), mode.refresh_hz, mode.refresh_hz * 0.005);
}

TEST_P(BuildEdidMode, RefreshRate_IsNotBelowRequest)
{
    const Mode mode = GetParam();

    auto edid = build_or_fail(
        { .width = mode.width, .height = mode.height, .refresh_hz = mode.refresh_hz });

    EXPECT_GE(decode_timing(descriptor(edid, 0)).refresh_hz(), mode.refresh_hz);
}

TEST_P(BuildEdidMode, RangeLimits_ContainPreferredTiming)
{
    const Mode mode = GetParam();

    auto edid = build_or_fail(
        { .width = mode.width, .height = mode.height, .refresh_hz = mode.refresh_hz });

    auto timing = decode_timing(descriptor(edid, 0));
    const uint8_t* range = descriptor(edid, 2);
    double line_khz = timing.pixel_clock_10khz * 10.0 / (timing.h_active + timing.h_blank);
    EXPECT_LE(range[5], timing.refresh_hz());
    EXPECT_GE(range[6], timing.refresh_hz());
    EXPECT_LE(range[7], line_khz);
    EXPECT_GE(range[8], line_khz);
    EXPECT_GE(range[9] * 1000u, timing.pixel_clock_10khz);
}

INSTANTIATE_TEST_SUITE_P(CommonAndOddSizes, BuildEdidMode,
    ::testing::Values(Mode { 640, 480, 60 }, Mode { 800, 600, 60 }, Mode { 1024, 768, 60 },
        Mode { 1280, 800, 60 }, Mode { 1366, 768, 60 }, Mode { 801, 601, 60 },
        Mode { 1920, 1080, 60 }, Mode { 1920, 1080, 144 }, Mode { 2560, 1600, 60 },
        Mode { 3840, 2160, 60 }, Mode { 4095, 4095, 30 }, Mode { 1280, 720, 24 },
        Mode { 3916, 3536, 1 }, Mode { 640, 480, 250 }),
    mode_name<Mode>);

TEST(BuildEdid, SmallModeJustOver10MHz_Succeeds)
{
    // 400x300 at 60 Hz: 560 x 313 pixels in all, a 10.5 MHz clock.
    auto edid = build_or_fail({ .width = 400, .height = 300 });

    auto timing = decode_timing(descriptor(edid, 0));
    EXPECT_EQ(timing.h_active, 400u);
    EXPECT_EQ(timing.v_active, 300u);
    EXPECT_GE(timing.pixel_clock_10khz, 1000u);
}

// ---- rejected modes -----------------------------------------------------------------------------

TEST(BuildEdid, ZeroWidth_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 0, .height = 768 }).has_value());
}

TEST(BuildEdid, ZeroHeight_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 0 }).has_value());
}

TEST(BuildEdid, WidthOver4095_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 4096, .height = 768 }).has_value());
}

TEST(BuildEdid, HeightOver4095_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 4096 }).has_value());
}

TEST(BuildEdid, ZeroRefresh_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 768, .refresh_hz = 0 }).has_value());
}

TEST(BuildEdid, RefreshOver250_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1024, .height = 768, .refresh_hz = 251 }).has_value());
}

TEST(BuildEdid, PixelClockOver655MHz_ReturnsError)
{
    // 4255 x 4212 at 60 Hz is a 1075 MHz clock.
    auto edid = build_edid({ .width = 4095, .height = 4095, .refresh_hz = 60 });

    ASSERT_FALSE(edid.has_value());
    EXPECT_NE(edid.error().message.find("pixel clock"), std::string::npos);
}

TEST(BuildEdid, PixelClockBelow10MHz_ReturnsError)
{
    // 480 x 253 at 60 Hz is a 7.3 MHz clock, which edid-decode takes for invalid data.
    auto edid = build_edid({ .width = 320, .height = 240, .refresh_hz = 60 });

    ASSERT_FALSE(edid.has_value());
    EXPECT_NE(edid.error().message.find("pixel clock"), std::string::npos);
}

TEST(BuildEdid, OnePixelMode_ReturnsError)
{
    EXPECT_FALSE(build_edid({ .width = 1, .height = 1 }).has_value());
}

TEST(BuildEdid, LineRateOver255kHz_ReturnsError)
{
    // A narrow, very tall mode: ~4300 lines at 120 Hz is over 500 kHz.
    EXPECT_FALSE(build_edid({ .width = 16, .height = 4095, .refresh_hz = 120 }).has_value());
}

// ---- conformance, checked by edid-decode --------------------------------------------------------

struct CommandOutput {
    int exit_status;
    std::string text;
};

CommandOutput run_command(const std::string& command)
{
    CommandOutput output { -1, {} };
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr)
        return output;
    std::array<char, 4096> buffer {};
    size_t count;
    while ((count = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
        output.text.append(buffer.data(), count);
    int status = pclose(pipe);
    output.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return output;
}

// Runs `edid-decode --check` on the EDID. edid-decode is a required test dependency (Debian
// package edid-decode): the tests fail, rather than skip, when it is missing.
CommandOutput edid_decode_check(const std::vector<uint8_t>& edid)
{
    std::string path = ::testing::TempDir() + "vgpu-edid-" + std::to_string(getpid()) + ".bin";
    {
        std::ofstream file(path, std::ios::binary);
        file.write(
            reinterpret_cast<const char*>(edid.data()), static_cast<std::streamsize>(edid.size()));
        if (!file.good())
            return { -1, "cannot write " + path };
    }
    auto result = run_command("edid-decode --check " + path);
    std::remove(path.c_str());
    if (result.exit_status == 127)
        result.text = "edid-decode is not installed (Debian package edid-decode)\n" + result.text;
    return result;
}

class EdidDecodeConformance : public ::testing::TestWithParam<EdidInfo> { };

TEST_P(EdidDecodeConformance, EdidDecodeCheck_ReportsNoFailuresOrWarnings)
{
    auto edid = build_or_fail(GetParam());

    auto result = edid_decode_check(edid);

    EXPECT_EQ(result.exit_status, 0) << result.text;
    EXPECT_NE(result.text.find("EDID conformity: PASS"), std::string::npos) << result.text;
    EXPECT_EQ(result.text.find("Failures:"), std::string::npos) << result.text;
    EXPECT_EQ(result.text.find("Warnings:"), std::string::npos) << result.text;
}

// Screens under 100 cm² (here 11 x 8 cm at 96 dpi) draw edid-decode's "dubious maximum image size"
// warning, but no failure.
TEST(EdidDecodeConformance, SmallScreen_EdidDecodeCheckReportsNoFailures)
{
    auto edid = build_or_fail({ .width = 400, .height = 300 });

    auto result = edid_decode_check(edid);

    EXPECT_EQ(result.exit_status, 0) << result.text;
    EXPECT_NE(result.text.find("EDID conformity: PASS"), std::string::npos) << result.text;
    EXPECT_EQ(result.text.find("Failures:"), std::string::npos) << result.text;
}

INSTANTIATE_TEST_SUITE_P(Sizes, EdidDecodeConformance,
    ::testing::Values(EdidInfo { .width = 640, .height = 480 },
        EdidInfo { .width = 1024, .height = 768 }, EdidInfo { .width = 1280, .height = 800 },
        EdidInfo { .width = 1366, .height = 768 },
        EdidInfo { .width = 801, .height = 601, .serial = 7 },
        EdidInfo {
            .width = 1920, .height = 1080, .width_mm = 598, .height_mm = 336, .serial = 123456 },
        EdidInfo { .width = 2560, .height = 1600, .refresh_hz = 120 },
        EdidInfo { .width = 3840, .height = 2160 },
        EdidInfo { .width = 4095, .height = 4095, .refresh_hz = 30 },
        EdidInfo { .width = 1280, .height = 1024, .refresh_hz = 75, .name = "0123456789abcdef" },
        EdidInfo { .width = 3916, .height = 3536, .refresh_hz = 1 },
        EdidInfo { .width = 640, .height = 480, .refresh_hz = 250 }),
    mode_name<EdidInfo>);

} // namespace

} // namespace vgpu::virtio_gpu
