// Checked arithmetic for sizes and offsets that come from the guest or the frontend.
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>

namespace vgpu {

template <std::integral T>
[[nodiscard]] constexpr std::optional<T> checked_add(T a, T b)
{
    T out;
    if (__builtin_add_overflow(a, b, &out))
        return std::nullopt;
    return out;
}

template <std::integral T>
[[nodiscard]] constexpr std::optional<T> checked_mul(T a, T b)
{
    T out;
    if (__builtin_mul_overflow(a, b, &out))
        return std::nullopt;
    return out;
}

// True when [offset, offset + length) lies inside [0, total), in the non-wrapping form
// `offset > total || length > total - offset`.
template <std::unsigned_integral T>
[[nodiscard]] constexpr bool range_within(T offset, T length, T total)
{
    return offset <= total && length <= total - offset;
}

// True when the half-open ranges [a, a + a_len) and [b, b + b_len) share a byte. Lengths are
// non-zero and a + a_len, b + b_len do not wrap (callers check that first).
[[nodiscard]] constexpr bool ranges_overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len)
{
    return a < b + b_len && b < a + a_len;
}

} // namespace vgpu
