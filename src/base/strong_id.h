// Distinct integer ids (ResourceId, ScanoutId, ...) that do not convert into each other.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace vgpu {

template <typename Tag, typename T = uint32_t>
class StrongId {
public:
    constexpr StrongId() = default;
    constexpr explicit StrongId(T value)
        : m_value(value)
    {
    }
    constexpr T value() const { return m_value; }
    constexpr auto operator<=>(const StrongId&) const = default;

private:
    T m_value {};
};

} // namespace vgpu

template <typename Tag, typename T>
struct std::hash<vgpu::StrongId<Tag, T>> {
    size_t operator()(const vgpu::StrongId<Tag, T>& id) const noexcept
    {
        return std::hash<T> {}(id.value());
    }
};
