// CRC-32C (Castagnoli; iSCSI, ext4, SSE4.2's crc32 instruction): the frame checksum of our
// per-flip CRC capture. Chosen for speed: the SSE4.2 instruction does 8 bytes per instruction,
// and three interleaved streams hide its 3-cycle latency, so a frame is checksummed at cache
// speed right after it is copied (zlib's crc32 runs at about 3 GB/s here; ISA-L's crc32 at about
// 7.6 GB/s). A table fallback keeps it portable. Values are the standard CRC-32C (initial
// 0xFFFFFFFF, reflected, final XOR 0xFFFFFFFF): crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace vgpu::crc {

// The CRC of `data`, continuing from `crc` (0 for a new checksum).
uint32_t crc32c(uint32_t crc, std::span<const std::byte> data);

// The CRC of `pixels` 32-bit little-endian pixels in the canonical layout 0x00RRGGBB: the top
// byte of every pixel counts as zero. For pixels stored as B, G, R, X/A bytes (XRGB8888 and
// ARGB8888 alike) this is their CRC with alpha ignored.
uint32_t crc32c_xrgb(uint32_t crc, const uint32_t* pixels, size_t count);

// The CRCs of `blocks` consecutive blocks of `block_pixels` canonical pixels each (as
// crc32c_xrgb, each from 0) into `out`: several blocks at a time in independent streams (three
// with the crc32 instruction, eight with folding), so that short blocks (the tiles of a row) are
// checksummed as fast as one long buffer.
void crc32c_xrgb_blocks(const uint32_t* pixels, size_t block_pixels, size_t blocks, uint32_t* out);

// As crc32c_xrgb_blocks, copying the blocks from `src` to `dst` on the way (the two must not
// overlap; either may be unaligned). With AVX-512 and VPCLMULQDQ, blocks of a multiple of 16
// pixels are folded 64 bytes at a time, several times faster than the crc32 instruction, so a
// copy that checksums costs about what a plain copy does.
void copy_crc32c_xrgb_blocks(
    uint32_t* dst, const uint32_t* src, size_t block_pixels, size_t blocks, uint32_t* out);

// crc(A || B) from crc(A), crc(B) and B's length.
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

// Appending many blocks of one length (the rows of a frame): the shift by the block length is
// a linear map, tabulated once (4 tables of 256 entries), so each append is 4 lookups.
class Appender {
public:
    explicit Appender(uint64_t block_length);
    // crc(A || B) where B has the block length.
    uint32_t append(uint32_t crc_a, uint32_t crc_b) const
    {
        return m_table[0][crc_a & 0xff] ^ m_table[1][(crc_a >> 8) & 0xff]
            ^ m_table[2][(crc_a >> 16) & 0xff] ^ m_table[3][crc_a >> 24] ^ crc_b;
    }
    uint64_t block_length() const { return m_block_length; }

private:
    uint64_t m_block_length;
    uint32_t m_table[4][256];
};

// Whether the SSE4.2 instruction is used (for benchmarks and logs).
bool hardware_accelerated();

enum class Implementation {
    Table,
    Sse42,
    Avx512Clmul
};
// The one in use: the best this CPU has, unless a test or benchmark chose a simpler one.
Implementation implementation();
const char* implementation_name(Implementation implementation);
// For tests and benchmarks: false (and nothing changes) when the CPU lacks it.
bool use_implementation(Implementation implementation);

namespace testing {
// Called by copy_crc32c_xrgb_blocks after each copy and before the copied blocks are
// checksummed, with the source that was copied: a test changes it there, as a guest drawing
// during a transfer does, to check that the CRC is of what was stored. Null: no hook.
using AfterCopyHook = void (*)(const uint32_t* source, size_t pixels);
void set_after_copy_hook(AfterCopyHook hook);
} // namespace testing

} // namespace vgpu::crc
