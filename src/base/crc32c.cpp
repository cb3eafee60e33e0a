#include "base/crc32c.h"

#include <array>
#include <atomic>
#include <cstring>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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
    uint64_t v = 0;
    std::memcpy(&v, p, 8);
    return v;
}

constexpr uint64_t XRGB_MASK = 0x00FFFFFF00FFFFFFull;

Implementation detect()
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq")
        && __builtin_cpu_supports("sse4.2"))
        return Implementation::Avx512Clmul;
    if (__builtin_cpu_supports("sse4.2"))
        return Implementation::Sse42;
#endif
    return Implementation::Table;
}
const Implementation g_best = detect();
// Chosen once, changed only by tests and benchmarks (use_implementation), read by every thread
// that checksums: atomics, read relaxed (a checksum in flight may finish with either).
std::atomic<Implementation> g_used { g_best };
std::atomic<bool> g_hardware { g_best != Implementation::Table };
std::atomic<testing::AfterCopyHook> g_after_copy { nullptr };

void after_copy(const void* source, size_t bytes)
{
    if (auto hook = g_after_copy.load(std::memory_order_relaxed)) [[unlikely]]
        hook(static_cast<const uint32_t*>(source), bytes / 4);
}

#if defined(__x86_64__)
// Three independent streams over thirds of the buffer, then joined with shift operators.
// `mask` is applied to every 8-byte word (XRGB_MASK for canonical pixels, ~0 for raw bytes).
__attribute__((target("sse4.2"))) uint32_t raw_hardware(
    uint32_t crc, const unsigned char* p, size_t n, uint64_t mask)
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
        uint32_t v = 0;
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
__attribute__((target("sse4.2"))) void raw_hardware_x3(
    const unsigned char* const p[3], size_t n, uint64_t mask, uint32_t out[3])
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
            uint32_t v = 0;
            std::memcpy(&v, p[k] + done, 4);
            out[k] = __builtin_ia32_crc32si(out[k], v & uint32_t(mask));
        }
    }
}

// x^n mod P in our reflected 32-bit representation (bit 31 is x^0).
uint32_t x_power(uint64_t n)
{
    uint32_t result = 1u << 31;
    for (unsigned k = 0; n; n >>= 1, ++k)
        if (n & 1)
            result = multiply(powers().power[k & 63], result);
    return result;
}

// Folding with carry-less multiplication (the method of Intel's "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ"; constants derived here). A 128-bit lane holds a
// polynomial A of degree < 128 in the reflected layout (byte 0 bit 0 is x^127): its low qword is
// the high half H, its high qword the low half L. Moving A forward by d bits, so that it can be
// XORed into the data d bits later, is A * x^d = H * x^(d+64) + L * x^d, and mod P that is
// H * k_h + L * k_l with 32-bit constants. A reflected carry-less multiply of two 64-bit values
// yields their product times x, hence k_h = x^(d+63) mod P and k_l = x^(d-1) mod P; as 64-bit
// reflected operands they are our 32-bit values shifted up by 32.
struct FoldConstants {
    uint64_t high, low;
};
FoldConstants fold_by(uint64_t bits)
{
    return { uint64_t(x_power(bits + 63)) << 32, uint64_t(x_power(bits - 1)) << 32 };
}

struct VectorConstants {
    FoldConstants by512, by384, by256, by128;
    VectorConstants()
        : by512(fold_by(512))
        , by384(fold_by(384))
        , by256(fold_by(256))
        , by128(fold_by(128))
    {
    }
};
const VectorConstants& vector_constants()
{
    static const VectorConstants constants;
    return constants;
}

// Blocks of a multiple of 64 bytes, eight at a time (one 512-bit accumulator each, to hide the
// multiplier's latency), each block's canonical CRC into `out`; copied to `dst` on the way when
// it is not null.
// GCC 12's AVX-512 headers trip its own uninitialized-value warnings (_mm512_undefined_*).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f,vpclmulqdq,sse4.2"))) void avx512_blocks(
    unsigned char* dst, const unsigned char* src, size_t block_bytes, size_t blocks, uint32_t* out)
{
    const auto& c = vector_constants();
    const __m512i mask = _mm512_set1_epi32(0x00FFFFFF);
    const __m512i init = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1);
    const __m512i fold = _mm512_broadcast_i32x4(
        _mm_set_epi64x(int64_t(c.by512.low), int64_t(c.by512.high)));
    // Lanes 0..2 move forward onto lane 3 (by 384, 256 and 128 bits); lane 3 stays.
    const __m512i reduce = _mm512_set_epi64(0, 0, int64_t(c.by128.low), int64_t(c.by128.high),
        int64_t(c.by256.low), int64_t(c.by256.high), int64_t(c.by384.low), int64_t(c.by384.high));
    for (size_t first = 0; first < blocks; first += 8) {
        const size_t group = std::min<size_t>(8, blocks - first);
        // Copy the group first (glibc's memcpy is the fastest copy), then checksum the copy
        // while it is in L1: faster than storing from the folding loop.
        const unsigned char* from = src;
        if (dst) {
            std::memcpy(dst + first * block_bytes, src + first * block_bytes, group * block_bytes);
            after_copy(src + first * block_bytes, group * block_bytes);
            from = dst;
        }
        __m512i acc[8];
        for (size_t j = 0; j < group; ++j) {
            const size_t at = (first + j) * block_bytes;
            __m512i v = _mm512_loadu_si512(from + at);
            acc[j] = _mm512_xor_si512(_mm512_and_si512(v, mask), init);
        }
        for (size_t offset = 64; offset < block_bytes; offset += 64) {
            for (size_t j = 0; j < group; ++j) {
                const size_t at = (first + j) * block_bytes + offset;
                __m512i v = _mm512_and_si512(_mm512_loadu_si512(from + at), mask);
                __m512i h = _mm512_clmulepi64_epi128(acc[j], fold, 0x00);
                __m512i l = _mm512_clmulepi64_epi128(acc[j], fold, 0x11);
                acc[j] = _mm512_ternarylogic_epi64(h, l, v, 0x96); // h ^ l ^ v
            }
        }
        for (size_t j = 0; j < group; ++j) {
            __m512i r = _mm512_xor_si512(_mm512_clmulepi64_epi128(acc[j], reduce, 0x00),
                _mm512_clmulepi64_epi128(acc[j], reduce, 0x11));
            __m128i x = _mm_xor_si128(
                _mm_xor_si128(_mm512_castsi512_si128(r), _mm512_extracti32x4_epi32(r, 1)),
                _mm_xor_si128(
                    _mm512_extracti32x4_epi32(r, 2), _mm512_extracti32x4_epi32(acc[j], 3)));
            // What is left is a 16-byte message with the same CRC as the block.
            uint64_t crc = _mm_crc32_u64(0, uint64_t(_mm_cvtsi128_si64(x)));
            crc = _mm_crc32_u64(crc, uint64_t(_mm_extract_epi64(x, 1)));
            out[first + j] = ~uint32_t(crc);
        }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
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
    return ~raw_update(
        ~crc, reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~0ull);
}

uint32_t crc32c_xrgb(uint32_t crc, const uint32_t* pixels, size_t count)
{
    return ~raw_update(~crc, reinterpret_cast<const unsigned char*>(pixels), count * 4, XRGB_MASK);
}

void crc32c_xrgb_blocks(const uint32_t* pixels, size_t block_pixels, size_t blocks, uint32_t* out)
{
    copy_crc32c_xrgb_blocks(nullptr, pixels, block_pixels, blocks, out);
}

void copy_crc32c_xrgb_blocks(
    uint32_t* dst, const uint32_t* src, size_t block_pixels, size_t blocks, uint32_t* out)
{
    auto* d = reinterpret_cast<unsigned char*>(dst);
    const auto* p = reinterpret_cast<const unsigned char*>(src);
    const size_t block_bytes = block_pixels * 4;
    size_t i = 0;
#if defined(__x86_64__)
    // Both ways copy a few blocks and checksum them from L1 right away. Measured on 1280x800 in
    // 128-pixel blocks, a call per 4 KiB page as guest backings come: memcpy alone 380 us, with
    // folding 436 us, with the crc32 instruction 571 us.
    if (g_used == Implementation::Avx512Clmul && block_bytes % 64 == 0 && block_bytes >= 64) {
        avx512_blocks(d, p, block_bytes, blocks, out);
        return;
    }
    // Every path checksums what it stored, never the source again: a guest may be drawing into
    // the source while we copy it, and the CRC must be of the pixels we keep.
    if (g_hardware) {
        for (; i + 3 <= blocks; i += 3) {
            const unsigned char* from = p;
            if (d) {
                std::memcpy(d + i * block_bytes, p + i * block_bytes, 3 * block_bytes);
                after_copy(p + i * block_bytes, 3 * block_bytes);
                from = d;
            }
            const unsigned char* s3[3] = { from + i * block_bytes, from + (i + 1) * block_bytes,
                from + (i + 2) * block_bytes };
            raw_hardware_x3(s3, block_bytes, XRGB_MASK, out + i);
            out[i] = ~out[i];
            out[i + 1] = ~out[i + 1];
            out[i + 2] = ~out[i + 2];
        }
    }
#endif
    for (; i < blocks; ++i) {
        const uint32_t* stored = src + i * block_pixels;
        if (d) {
            std::memcpy(d + i * block_bytes, p + i * block_bytes, block_bytes);
            after_copy(p + i * block_bytes, block_bytes);
            stored = dst + i * block_pixels;
        }
        out[i] = crc32c_xrgb(0, stored, block_pixels);
    }
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

Implementation implementation() { return g_used; }

bool use_implementation(Implementation wanted)
{
    if (int(wanted) > int(g_best))
        return false;
    g_used = wanted;
    g_hardware = wanted != Implementation::Table;
    return true;
}

void testing::set_after_copy_hook(AfterCopyHook hook) { g_after_copy.store(hook); }

const char* implementation_name(Implementation i)
{
    switch (i) {
    case Implementation::Table:
        return "table";
    case Implementation::Sse42:
        return "sse4.2 crc32, 3 streams";
    case Implementation::Avx512Clmul:
        return "avx-512 vpclmulqdq folding";
    }
    return "?";
}

} // namespace vgpu::crc
