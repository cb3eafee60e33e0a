// EDID 1.4 base block (VESA E-EDID Release A, Revision 2, §3) with a CVT 1.2 reduced blanking
// (version 1) preferred timing. Section and table references are to those two standards.
#include "virtio_gpu/edid.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <numeric>
#include <span>

namespace vgpu::virtio_gpu {
namespace {

constexpr size_t DESCRIPTOR_SIZE = 18;
constexpr size_t DESCRIPTOR_COUNT = 4;
constexpr size_t DESCRIPTOR_TEXT_SIZE = 13;
using Block = std::array<uint8_t, EDID_BLOCK_SIZE>;
using Descriptor = std::span<uint8_t, DESCRIPTOR_SIZE>;

// Base block offsets (Table 3.1).
constexpr size_t OFFSET_MANUFACTURER = 8;
constexpr size_t OFFSET_PRODUCT_CODE = 10;
constexpr size_t OFFSET_SERIAL = 12;
constexpr size_t OFFSET_WEEK = 16;
constexpr size_t OFFSET_YEAR = 17;
constexpr size_t OFFSET_VERSION = 18;
constexpr size_t OFFSET_REVISION = 19;
constexpr size_t OFFSET_VIDEO_INPUT = 20;
constexpr size_t OFFSET_SCREEN_SIZE = 21;
constexpr size_t OFFSET_GAMMA = 23;
constexpr size_t OFFSET_FEATURES = 24;
constexpr size_t OFFSET_CHROMATICITY = 25;
constexpr size_t OFFSET_STANDARD_TIMINGS = 38;
constexpr size_t STANDARD_TIMING_COUNT = 8;
constexpr size_t OFFSET_DESCRIPTORS = 54;
constexpr size_t OFFSET_EXTENSION_COUNT = 126;
constexpr size_t OFFSET_CHECKSUM = 127;

constexpr std::array<uint8_t, 8> HEADER = { 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00 };
constexpr std::string_view MANUFACTURER_ID = "VGD";
constexpr uint16_t PRODUCT_CODE = 0x0001;
// A fixed date keeps the EDID deterministic; 1.4 EDIDs are expected to postdate 2006 (§3.4.4).
constexpr uint8_t MANUFACTURE_WEEK = 1;
constexpr uint32_t MANUFACTURE_YEAR = 2024;

// Video input definition (§3.6.1, Table 3.11): digital, 8 bits per primary, DisplayPort.
constexpr uint8_t VIDEO_INPUT = 0x80 | 0x20 | 0x05;
// Gamma is stored as 100 * gamma - 100 (§3.6.3).
constexpr uint8_t GAMMA_2_2 = 120;
// Feature support (§3.6.4, Table 3.14): no DPMS states, RGB 4:4:4 only (bits 4-3 zero), sRGB is the
// default colour space, the preferred timing is the native mode, continuous frequency (the range
// limits descriptor below is therefore mandatory).
constexpr uint8_t FEATURE_SRGB_DEFAULT = 0x04;
constexpr uint8_t FEATURE_PREFERRED_IS_NATIVE = 0x02;
constexpr uint8_t FEATURE_CONTINUOUS_FREQUENCY = 0x01;

// Chromaticity coordinates are 10-bit binary fractions (§3.7); these take ten-thousandths.
constexpr uint16_t chromaticity_10bit(uint32_t ten_thousandths)
{
    return static_cast<uint16_t>((ten_thousandths * 1024 + 5000) / 10000);
}
struct Chromaticity {
    uint16_t x;
    uint16_t y;
};
// sRGB primaries and D65 white point (IEC 61966-2-1), required by FEATURE_SRGB_DEFAULT.
constexpr Chromaticity SRGB_RED { chromaticity_10bit(6400), chromaticity_10bit(3300) };
constexpr Chromaticity SRGB_GREEN { chromaticity_10bit(3000), chromaticity_10bit(6000) };
constexpr Chromaticity SRGB_BLUE { chromaticity_10bit(1500), chromaticity_10bit(600) };
constexpr Chromaticity SRGB_WHITE { chromaticity_10bit(3127), chromaticity_10bit(3290) };

// Display descriptor tags (§3.10.3, Table 3.19).
constexpr uint8_t TAG_PRODUCT_SERIAL = 0xFF;
constexpr uint8_t TAG_PRODUCT_NAME = 0xFC;
constexpr uint8_t TAG_RANGE_LIMITS = 0xFD;
constexpr uint8_t TAG_DUMMY = 0x10;
// Range limits byte 10 (Table 3.26): the limits only, no GTF or CVT formula for other modes.
constexpr uint8_t RANGE_LIMITS_ONLY = 0x01;

// Detailed timing flags (Table 3.22): progressive, no stereo, digital separate sync with the
// CVT reduced blanking polarities, horizontal positive and vertical negative.
constexpr uint8_t DTD_DIGITAL_SEPARATE_SYNC = 0x18;
constexpr uint8_t DTD_HSYNC_POSITIVE = 0x02;

// CVT 1.2 reduced blanking, version 1: a fixed horizontal blanking of 160 pixels (sync 32, front
// porch 48) and a vertical blanking interval of at least 460 µs.
constexpr uint32_t RB_H_BLANK = 160;
constexpr uint32_t RB_H_SYNC = 32;
constexpr uint32_t RB_H_FRONT_PORCH = RB_H_BLANK / 2 - RB_H_SYNC;
constexpr uint64_t RB_MIN_V_BLANK_US = 460;
constexpr uint32_t RB_V_FRONT_PORCH = 3;
constexpr uint32_t RB_MIN_V_BACK_PORCH = 6;
// The detailed timing's 16-bit clock field allows 10 kHz..655.35 MHz, but decoders (edid-decode
// among them) take a clock below 10 MHz for invalid data.
constexpr uint32_t MIN_PIXEL_CLOCK_10KHZ = 1'000;
constexpr uint32_t MAX_PIXEL_CLOCK_10KHZ = 0xFFFF;

struct Timing {
    uint32_t pixel_clock_10khz;
    uint32_t h_active;
    uint32_t h_blank;
    uint32_t h_front_porch;
    uint32_t h_sync;
    uint32_t v_active;
    uint32_t v_blank;
    uint32_t v_front_porch;
    uint32_t v_sync;

    uint64_t h_total() const { return uint64_t { h_active } + h_blank; }
    uint64_t v_total() const { return uint64_t { v_active } + v_blank; }
};

struct RangeLimits {
    uint32_t min_v_hz;
    uint32_t max_v_hz;
    uint32_t min_h_khz;
    uint32_t max_h_khz;
    uint32_t max_pixel_clock_10mhz;
};

struct PhysicalSize {
    uint32_t width_mm;
    uint32_t height_mm;
};

constexpr uint8_t low_byte(uint64_t value) { return static_cast<uint8_t>(value & 0xFF); }
// Bits [shift, shift + count) of value, moved down to bit 0.
constexpr uint8_t bits(uint64_t value, unsigned shift, unsigned count)
{
    return static_cast<uint8_t>((value >> shift) & ((1u << count) - 1));
}
constexpr bool fits_bits(uint64_t value, unsigned count)
{
    return value < (uint64_t { 1 } << count);
}
constexpr uint64_t divide_rounding_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// CVT signals the aspect ratio through the vertical sync width (CVT 1.2 Table 3-3); any ratio
// outside the table is a custom one with a 10-line sync.
uint32_t cvt_vsync_width(uint64_t width, uint64_t height)
{
    if (width * 3 == height * 4)
        return 4;
    if (width * 9 == height * 16)
        return 5;
    if (width * 10 == height * 16)
        return 6;
    if (width * 4 == height * 5 || width * 9 == height * 15)
        return 7;
    return 10;
}

// The preferred mode in CVT reduced blanking (version 1), with two deliberate departures from the
// formula: the active width is not rounded down to 8-pixel cells, because the guest's framebuffer
// is exactly `width` wide, and the pixel clock is rounded up to the detailed timing's own 10 kHz
// unit instead of down to 250 kHz, which for small modes would move the refresh rate by up to 1%.
// Rounding up keeps the refresh rate at or (by at most 0.1% at 10 MHz) above the request.
Result<Timing> cvt_reduced_blanking(uint32_t width, uint32_t height, uint32_t refresh_hz)
{
    Timing timing {};
    timing.h_active = width;
    timing.h_blank = RB_H_BLANK;
    timing.h_front_porch = RB_H_FRONT_PORCH;
    timing.h_sync = RB_H_SYNC;
    timing.v_active = height;
    timing.v_front_porch = RB_V_FRONT_PORCH;
    timing.v_sync = cvt_vsync_width(width, height);

    // The estimated line period is (1e6 / refresh - 460) / height µs, and the blanking takes
    // floor(460 µs / period) + 1 lines; the same in integers. refresh <= 250 keeps the divisor > 0.
    const uint64_t refresh = refresh_hz;
    const uint64_t blank_lines = RB_MIN_V_BLANK_US * height * refresh
            / (1'000'000 - RB_MIN_V_BLANK_US * refresh)
        + 1;
    const uint64_t min_blank_lines = RB_V_FRONT_PORCH + timing.v_sync + RB_MIN_V_BACK_PORCH;
    timing.v_blank = static_cast<uint32_t>(std::max(blank_lines, min_blank_lines));

    const uint64_t clock_hz = refresh * timing.h_total() * timing.v_total();
    const uint64_t clock_10khz = divide_rounding_up(clock_hz, 10'000);
    if (clock_10khz < MIN_PIXEL_CLOCK_10KHZ || clock_10khz > MAX_PIXEL_CLOCK_10KHZ) {
        return Error::format("EDID: {}x{} at {} Hz needs a {} kHz pixel clock, outside a detailed "
                             "timing's 10000..655350 kHz",
            width, height, refresh_hz, clock_hz / 1'000);
    }
    timing.pixel_clock_10khz = static_cast<uint32_t>(clock_10khz);
    return timing;
}

// Range limits that just contain the preferred timing, rounded outwards to whole Hz and kHz.
Result<RangeLimits> range_limits_for(const Timing& timing)
{
    const uint64_t clock_hz = uint64_t { timing.pixel_clock_10khz } * 10'000;
    const uint64_t frame_pixels = timing.h_total() * timing.v_total();
    const uint64_t line_pixels_khz = timing.h_total() * 1'000;
    RangeLimits limits {};
    limits.min_v_hz = static_cast<uint32_t>(clock_hz / frame_pixels);
    limits.max_v_hz = static_cast<uint32_t>(divide_rounding_up(clock_hz, frame_pixels));
    limits.min_h_khz = static_cast<uint32_t>(clock_hz / line_pixels_khz);
    limits.max_h_khz = static_cast<uint32_t>(divide_rounding_up(clock_hz, line_pixels_khz));
    limits.max_pixel_clock_10mhz = static_cast<uint32_t>(
        divide_rounding_up(timing.pixel_clock_10khz, 1'000));
    // Table 3.26: rates are 1..255 (the offset flags for higher rates are not used here).
    if (limits.min_v_hz < 1 || limits.max_v_hz > 255)
        return Error::format("EDID: a {} Hz frame rate is outside the range limits' 1..255 Hz",
            clock_hz / frame_pixels);
    if (limits.min_h_khz < 1 || limits.max_h_khz > 255)
        return Error::format("EDID: a {} kHz line rate is outside the range limits' 1..255 kHz",
            clock_hz / line_pixels_khz);
    return limits;
}

// The physical size in millimetres: as given, or at 96 dpi, or with one side taken from the other
// and the aspect ratio of the mode.
Result<PhysicalSize> physical_size(const EdidInfo& info)
{
    uint64_t width_mm = info.width_mm;
    uint64_t height_mm = info.height_mm;
    if (width_mm == 0 && height_mm == 0) {
        width_mm = (uint64_t { info.width } * 254 + 480) / 960;
        height_mm = (uint64_t { info.height } * 254 + 480) / 960;
    } else if (width_mm == 0) {
        width_mm = (height_mm * info.width + info.height / 2) / info.height;
    } else if (height_mm == 0) {
        height_mm = (width_mm * info.height + info.width / 2) / info.width;
    }
    // A handful of pixels at 96 dpi is less than a millimetre; zero would mean "unknown".
    width_mm = std::max<uint64_t>(width_mm, 1);
    height_mm = std::max<uint64_t>(height_mm, 1);
    if (width_mm > EDID_MAX_SIZE_MM || height_mm > EDID_MAX_SIZE_MM) {
        return Error::format("EDID: a screen of {}x{} mm is larger than the {} mm an EDID holds",
            width_mm, height_mm, EDID_MAX_SIZE_MM);
    }
    return PhysicalSize { static_cast<uint32_t>(width_mm), static_cast<uint32_t>(height_mm) };
}

// The name as the descriptor holds it: cut to 13 characters, then without trailing spaces, which
// decoders flag because the padding is spaces too.
Result<std::string_view> monitor_name(std::string_view name)
{
    for (char c : name) {
        if (c < 0x20 || c > 0x7E)
            return Error::format("EDID: the monitor name must be printable ASCII");
    }
    name = name.substr(0, std::min(name.size(), EDID_MAX_NAME_LENGTH));
    while (!name.empty() && name.back() == ' ')
        name.remove_suffix(1);
    if (name.empty())
        return Error::format("EDID: the monitor name is empty");
    return name;
}

Result<void> validate_mode(const EdidInfo& info)
{
    if (info.width == 0 || info.height == 0 || info.width > EDID_MAX_ACTIVE_SIZE
        || info.height > EDID_MAX_ACTIVE_SIZE) {
        return Error::format("EDID: a {}x{} mode is outside 1x1..{}x{}", info.width, info.height,
            EDID_MAX_ACTIVE_SIZE, EDID_MAX_ACTIVE_SIZE);
    }
    if (info.refresh_hz == 0 || info.refresh_hz > EDID_MAX_REFRESH_HZ) {
        return Error::format("EDID: a refresh rate of {} Hz is outside 1..{} Hz", info.refresh_hz,
            EDID_MAX_REFRESH_HZ);
    }
    return {};
}

Descriptor descriptor_at(Block& block, size_t index)
{
    return Descriptor(block.data() + OFFSET_DESCRIPTORS + index * DESCRIPTOR_SIZE, DESCRIPTOR_SIZE);
}

// Detailed timing descriptor (§3.10.2, Table 3.21).
Result<void> write_detailed_timing(Descriptor out, const Timing& t, PhysicalSize size)
{
    if (!fits_bits(t.pixel_clock_10khz, 16) || !fits_bits(t.h_active, 12)
        || !fits_bits(t.h_blank, 12) || !fits_bits(t.v_active, 12) || !fits_bits(t.v_blank, 12)
        || !fits_bits(t.h_front_porch, 10) || !fits_bits(t.h_sync, 10)
        || !fits_bits(t.v_front_porch, 6) || !fits_bits(t.v_sync, 6)
        || !fits_bits(size.width_mm, 12) || !fits_bits(size.height_mm, 12))
        return Error::format(
            "EDID: the preferred timing does not fit a detailed timing descriptor");
    out[0] = low_byte(t.pixel_clock_10khz);
    out[1] = bits(t.pixel_clock_10khz, 8, 8);
    out[2] = low_byte(t.h_active);
    out[3] = low_byte(t.h_blank);
    out[4] = static_cast<uint8_t>(bits(t.h_active, 8, 4) << 4 | bits(t.h_blank, 8, 4));
    out[5] = low_byte(t.v_active);
    out[6] = low_byte(t.v_blank);
    out[7] = static_cast<uint8_t>(bits(t.v_active, 8, 4) << 4 | bits(t.v_blank, 8, 4));
    out[8] = low_byte(t.h_front_porch);
    out[9] = low_byte(t.h_sync);
    out[10] = static_cast<uint8_t>(bits(t.v_front_porch, 0, 4) << 4 | bits(t.v_sync, 0, 4));
    out[11] = static_cast<uint8_t>(bits(t.h_front_porch, 8, 2) << 6 | bits(t.h_sync, 8, 2) << 4
        | bits(t.v_front_porch, 4, 2) << 2 | bits(t.v_sync, 4, 2));
    out[12] = low_byte(size.width_mm);
    out[13] = low_byte(size.height_mm);
    out[14] = static_cast<uint8_t>(bits(size.width_mm, 8, 4) << 4 | bits(size.height_mm, 8, 4));
    out[15] = 0; // no borders
    out[16] = 0;
    out[17] = DTD_DIGITAL_SEPARATE_SYNC | DTD_HSYNC_POSITIVE;
    return {};
}

// Display descriptor header (Table 3.19): a zero pixel clock marks it as not a timing.
void write_display_descriptor_header(Descriptor out, uint8_t tag)
{
    std::fill(out.begin(), out.end(), uint8_t { 0 });
    out[3] = tag;
}

// Text descriptors (§3.10.3.1-3): 13 bytes, ended by a line feed and padded with spaces.
void write_text_descriptor(Descriptor out, uint8_t tag, std::string_view text)
{
    write_display_descriptor_header(out, tag);
    auto body = out.subspan<5, DESCRIPTOR_TEXT_SIZE>();
    size_t length = std::min(text.size(), body.size());
    std::transform(text.begin(), text.begin() + static_cast<ptrdiff_t>(length), body.begin(),
        [](char c) { return static_cast<uint8_t>(c); });
    if (length < body.size())
        body[length++] = 0x0A;
    std::fill(body.begin() + static_cast<ptrdiff_t>(length), body.end(), uint8_t { 0x20 });
}

// Display range limits descriptor (§3.10.3.3, Table 3.26), without rate offsets.
void write_range_limits(Descriptor out, const RangeLimits& limits)
{
    write_display_descriptor_header(out, TAG_RANGE_LIMITS);
    out[5] = low_byte(limits.min_v_hz);
    out[6] = low_byte(limits.max_v_hz);
    out[7] = low_byte(limits.min_h_khz);
    out[8] = low_byte(limits.max_h_khz);
    out[9] = low_byte(limits.max_pixel_clock_10mhz);
    out[10] = RANGE_LIMITS_ONLY;
    out[11] = 0x0A;
    std::fill(out.begin() + 12, out.end(), uint8_t { 0x20 });
}

void write_serial_or_dummy(Descriptor out, uint32_t serial)
{
    if (serial == 0) {
        write_display_descriptor_header(out, TAG_DUMMY);
        return;
    }
    std::array<char, 10> digits {};
    auto [end, error] = std::to_chars(digits.data(), digits.data() + digits.size(), serial);
    VGPU_VERIFY(error == std::errc {});
    write_text_descriptor(out, TAG_PRODUCT_SERIAL,
        std::string_view(digits.data(), static_cast<size_t>(end - digits.data())));
}

// Three letters A..Z as 5-bit values 1..26, big-endian (§3.4.1, Table 3.5).
constexpr uint16_t manufacturer_code(std::string_view id)
{
    return static_cast<uint16_t>(
        (id[0] - 'A' + 1) << 10 | (id[1] - 'A' + 1) << 5 | (id[2] - 'A' + 1));
}

// Chromaticity (§3.7, Table 3.16): the two low bits of all eight coordinates first, then the high
// eight bits of each.
void write_chromaticity(std::span<uint8_t, 10> out)
{
    auto low2 = [](uint16_t v) { return static_cast<uint8_t>(v & 0x3); };
    out[0] = static_cast<uint8_t>(low2(SRGB_RED.x) << 6 | low2(SRGB_RED.y) << 4
        | low2(SRGB_GREEN.x) << 2 | low2(SRGB_GREEN.y));
    out[1] = static_cast<uint8_t>(low2(SRGB_BLUE.x) << 6 | low2(SRGB_BLUE.y) << 4
        | low2(SRGB_WHITE.x) << 2 | low2(SRGB_WHITE.y));
    const std::array<uint16_t, 8> coordinates { SRGB_RED.x, SRGB_RED.y, SRGB_GREEN.x, SRGB_GREEN.y,
        SRGB_BLUE.x, SRGB_BLUE.y, SRGB_WHITE.x, SRGB_WHITE.y };
    for (size_t i = 0; i < coordinates.size(); ++i)
        out[2 + i] = static_cast<uint8_t>(coordinates[i] >> 2);
}

// Everything before the descriptors: header, vendor and product, version, basic display
// parameters, colour and the (unused) established and standard timings.
void write_fixed_fields(Block& block, const EdidInfo& info, PhysicalSize size)
{
    std::copy(HEADER.begin(), HEADER.end(), block.begin());
    constexpr uint16_t manufacturer = manufacturer_code(MANUFACTURER_ID);
    block[OFFSET_MANUFACTURER] = bits(manufacturer, 8, 8);
    block[OFFSET_MANUFACTURER + 1] = low_byte(manufacturer);
    block[OFFSET_PRODUCT_CODE] = low_byte(PRODUCT_CODE);
    block[OFFSET_PRODUCT_CODE + 1] = bits(PRODUCT_CODE, 8, 8);
    for (unsigned i = 0; i < 4; ++i)
        block[OFFSET_SERIAL + i] = bits(info.serial, 8 * i, 8);
    block[OFFSET_WEEK] = MANUFACTURE_WEEK;
    block[OFFSET_YEAR] = static_cast<uint8_t>(MANUFACTURE_YEAR - 1990);
    block[OFFSET_VERSION] = 1;
    block[OFFSET_REVISION] = 4;
    block[OFFSET_VIDEO_INPUT] = VIDEO_INPUT;
    // Whole centimetres (§3.6.2), rounded; physical_size() keeps both within 1..255.
    block[OFFSET_SCREEN_SIZE] = low_byte(std::max<uint32_t>((size.width_mm + 5) / 10, 1));
    block[OFFSET_SCREEN_SIZE + 1] = low_byte(std::max<uint32_t>((size.height_mm + 5) / 10, 1));
    block[OFFSET_GAMMA] = GAMMA_2_2;
    block[OFFSET_FEATURES] = FEATURE_SRGB_DEFAULT | FEATURE_PREFERRED_IS_NATIVE
        | FEATURE_CONTINUOUS_FREQUENCY;
    write_chromaticity(std::span<uint8_t, 10>(block.data() + OFFSET_CHROMATICITY, 10));
    // Established timings (bytes 35-37) stay zero; unused standard timings are 01h 01h (§3.9).
    std::fill_n(
        block.begin() + OFFSET_STANDARD_TIMINGS, 2 * STANDARD_TIMING_COUNT, uint8_t { 0x01 });
}

} // namespace

Result<std::vector<uint8_t>> build_edid(const EdidInfo& info)
{
    TRY(validate_mode(info));
    const std::string_view name = TRY(monitor_name(info.name));
    const PhysicalSize size = TRY(physical_size(info));
    const Timing timing = TRY(cvt_reduced_blanking(info.width, info.height, info.refresh_hz));
    const RangeLimits limits = TRY(range_limits_for(timing));

    Block block {};
    write_fixed_fields(block, info, size);
    static_assert(DESCRIPTOR_COUNT == 4);
    TRY(write_detailed_timing(descriptor_at(block, 0), timing, size));
    write_text_descriptor(descriptor_at(block, 1), TAG_PRODUCT_NAME, name);
    write_range_limits(descriptor_at(block, 2), limits);
    write_serial_or_dummy(descriptor_at(block, 3), info.serial);
    block[OFFSET_EXTENSION_COUNT] = 0;

    // §3.11: all 128 bytes sum to 0 modulo 256.
    const unsigned sum = std::accumulate(block.begin(), block.end() - 1, 0u);
    block[OFFSET_CHECKSUM] = static_cast<uint8_t>((256 - (sum & 0xFF)) & 0xFF);
    return std::vector<uint8_t>(block.begin(), block.end());
}

} // namespace vgpu::virtio_gpu
