#include "base/crc32c.h"

#include <array>
#include <cstring>
#include <memory>

namespace vgpu::crc {

namespace {

// The reflected Castagnoli polynomial.
constexpr uint32_t POLY = 0x82F63B78;

constexpr std::array<uint32_t, 256> make_table()
{
    std::array<uint32_t, 256> table {};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
    return table;
}
constexpr auto TABLE = make_table();

// a(x) * b(x) mod P(x), in the reflected bit order (bit 31 is x^0).
uint32_t multiply(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m)
            product ^= b;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

// x^(2^k) mod P for k = 0..63.
struct PowerTable {
    std::array<uint32_t, 64> power {};
    PowerTable()
    {
        power[0] = 1u << 30; // x^1
        for (size_t k = 1; k < power.size(); ++k)
            power[k] = multiply(power[k - 1], power[k - 1]);
    }
};
const PowerTable& powers()
{
    static const PowerTable table;
    return table;
}

// x^(8 * bytes) mod P: the operator that appends `bytes` zero bytes to a raw CRC.
uint32_t shift_operator(uint64_t bytes)
{
    uint32_t result = 1u << 31; // x^0
    unsigned k = 3; // 8 bits per byte
    for (uint64_t n = bytes; n; n >>= 1, ++k)
        if (n & 1)
            result = multiply(powers().power[k & 63], result);
    return result;
}

// Raw (unconditioned) updates: crc in, crc out, no inversion.
uint32_t raw_table(uint32_t crc, const unsigned char* p, size_t n)
{
    while (n--)
        crc = TABLE[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

uint64_t load64(const unsigned char* p)
{
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

constexpr uint64_t XRGB_MASK = 0x00FFFFFF00FFFFFFull;

bool detect_sse42()
{
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2");
#else
    return false;
#endif
}
const bool g_hardware = detect_sse42();

#if defined(__x86_64__)
// Three independent streams over thirds of the buffer, then joined with shift operators.
// `mask` is applied to every 8-byte word (XRGB_MASK for canonical pixels, ~0 for raw bytes).
__attribute__((target("sse4.2"))) uint32_t raw_hardware(uint32_t crc, const unsigned char* p, size_t n, uint64_t mask)
{
    constexpr size_t min_stream = 256;
    size_t words = n / 8;
    if (words >= 3 * (min_stream / 8)) {
        size_t third = words / 3;
        uint64_t c0 = crc, c1 = 0, c2 = 0;
        const unsigned char* p0 = p;
        const unsigned char* p1 = p + third * 8;
        const unsigned char* p2 = p + 2 * third * 8;
        for (size_t i = 0; i < third; ++i) {
            c0 = __builtin_ia32_crc32di(c0, load64(p0 + 8 * i) & mask);
            c1 = __builtin_ia32_crc32di(c1, load64(p1 + 8 * i) & mask);
            c2 = __builtin_ia32_crc32di(c2, load64(p2 + 8 * i) & mask);
        }
        // The join for the last stream length, kept: rows of one frame all have it.
        static thread_local std::unique_ptr<Appender> join;
        uint64_t bytes = third * 8;
        if (!join || join->block_length() != bytes)
            join = std::make_unique<Appender>(bytes);
        uint32_t joined = join->append(uint32_t(c0), uint32_t(c1));
        joined = join->append(joined, uint32_t(c2));
        crc = joined;
        p += 3 * third * 8;
        n -= 3 * third * 8;
        words = n / 8;
    }
    uint64_t c = crc;
    for (size_t i = 0; i < words; ++i)
        c = __builtin_ia32_crc32di(c, load64(p + 8 * i) & mask);
    crc = uint32_t(c);
    p += words * 8;
    n -= words * 8;
    // Tail bytes (pixels come in whole 4-byte units: a 4-byte tail is one pixel).
    if (n >= 4) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        crc = __builtin_ia32_crc32si(crc, v & uint32_t(mask));
        p += 4;
        n -= 4;
    }
    while (n--)
        crc = __builtin_ia32_crc32qi(crc, *p++);
    return crc;
}

// Three buffers of `n` bytes each, one stream per buffer, raw CRCs from ~0.
__attribute__((target("sse4.2"))) void raw_hardware_x3(const unsigned char* const p[3], size_t n, uint64_t mask, uint32_t out[3])
{
    uint64_t c0 = 0xFFFFFFFF, c1 = 0xFFFFFFFF, c2 = 0xFFFFFFFF;
    size_t words = n / 8;
    for (size_t i = 0; i < words; ++i) {
        c0 = __builtin_ia32_crc32di(c0, load64(p[0] + 8 * i) & mask);
        c1 = __builtin_ia32_crc32di(c1, load64(p[1] + 8 * i) & mask);
        c2 = __builtin_ia32_crc32di(c2, load64(p[2] + 8 * i) & mask);
    }
    out[0] = uint32_t(c0);
    out[1] = uint32_t(c1);
    out[2] = uint32_t(c2);
    size_t done = words * 8;
    if (n - done >= 4) {
        for (int k = 0; k < 3; ++k) {
            uint32_t v;
            std::memcpy(&v, p[k] + done, 4);
            out[k] = __builtin_ia32_crc32si(out[k], v & uint32_t(mask));
        }
    }
}
#endif

uint32_t raw_update(uint32_t crc, const unsigned char* p, size_t n, uint64_t mask)
{
#if defined(__x86_64__)
    if (g_hardware)
        return raw_hardware(crc, p, n, mask);
#endif
    if (mask == ~0ull)
        return raw_table(crc, p, n);
    // Masked fallback: 4-byte pixels with the top byte cleared.
    for (; n >= 4; n -= 4, p += 4) {
        unsigned char pixel[4] = { p[0], p[1], p[2], 0 };
        crc = raw_table(crc, pixel, 4);
    }
    return raw_table(crc, p, n);
}

} // namespace

uint32_t crc32c(uint32_t crc, std::span<const std::byte> data)
{
    return ~raw_update(~crc, reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~0ull);
}

uint32_t crc32c_xrgb(uint32_t crc, const uint32_t* pixels, size_t count)
{
    return ~raw_update(~crc, reinterpret_cast<const unsigned char*>(pixels), count * 4, XRGB_MASK);
}

void crc32c_xrgb_blocks(const uint32_t* pixels, size_t block_pixels, size_t blocks, uint32_t* out)
{
    size_t i = 0;
#if defined(__x86_64__)
    if (g_hardware) {
        const auto* base = reinterpret_cast<const unsigned char*>(pixels);
        const size_t block_bytes = block_pixels * 4;
        for (; i + 3 <= blocks; i += 3) {
            const unsigned char* p[3] = { base + i * block_bytes, base + (i + 1) * block_bytes, base + (i + 2) * block_bytes };
            raw_hardware_x3(p, block_bytes, XRGB_MASK, out + i);
            out[i] = ~out[i];
            out[i + 1] = ~out[i + 1];
            out[i + 2] = ~out[i + 2];
        }
    }
#endif
    for (; i < blocks; ++i)
        out[i] = crc32c_xrgb(0, pixels + i * block_pixels, block_pixels);
}

uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b)
{
    return multiply(shift_operator(length_b), crc_a) ^ crc_b;
}

Appender::Appender(uint64_t block_length)
    : m_block_length(block_length)
{
    // multiply(op, x) is linear in x: tabulate it per byte of x.
    uint32_t op = shift_operator(block_length);
    for (unsigned byte = 0; byte < 4; ++byte)
        for (uint32_t v = 0; v < 256; ++v)
            m_table[byte][v] = multiply(op, v << (8 * byte));
}

bool hardware_accelerated() { return g_hardware; }

} // namespace vgpu::crc
