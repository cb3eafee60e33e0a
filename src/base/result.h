// Result<T>: the subset of std::expected we need (g++ 12 in C++20 mode and clang 16 with
// libstdc++ 12 have no <expected>), plus TRY for early return. Our code never throws.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "base/verify.h"

namespace vgpu {

// A failure: a message meant for a log line or a JSON error, and the errno that caused it, if any.
struct Error {
    std::string message;
    int errno_value = 0;

    static Error from_errno(std::string_view what, int err = errno)
    {
        return Error { fmt::format("{}: {}", what, std::strerror(err)), err };
    }
    template <typename... Args>
    static Error format(fmt::format_string<Args...> f, Args&&... args)
    {
        return Error { fmt::format(f, std::forward<Args>(args)...), 0 };
    }
};

template <typename T, typename E = Error>
class [[nodiscard]] Result {
public:
    Result(T value)
        : m_storage(std::in_place_index<0>, std::move(value))
    {
    }
    Result(E error)
        : m_storage(std::in_place_index<1>, std::move(error))
    {
    }
    // Not a copy or move in disguise: the constraint excludes Result itself.
    template <typename U>
        requires(std::is_constructible_v<T, U &&> && !std::is_same_v<std::decay_t<U>, E>
            && !std::is_same_v<std::decay_t<U>, T> && !std::is_same_v<std::decay_t<U>, Result>)
    Result(U&& value) // NOLINT(bugprone-forwarding-reference-overload)
        : m_storage(std::in_place_index<0>, T(std::forward<U>(value)))
    {
    }

    bool has_value() const { return m_storage.index() == 0; }
    explicit operator bool() const { return has_value(); }

    T& value() &
    {
        VGPU_VERIFY(has_value());
        return std::get<0>(m_storage);
    }
    const T& value() const&
    {
        VGPU_VERIFY(has_value());
        return std::get<0>(m_storage);
    }
    T release_value()
    {
        VGPU_VERIFY(has_value());
        return std::move(std::get<0>(m_storage));
    }
    const E& error() const
    {
        VGPU_VERIFY(!has_value());
        return std::get<1>(m_storage);
    }
    E release_error()
    {
        VGPU_VERIFY(!has_value());
        return std::move(std::get<1>(m_storage));
    }
    T& operator*() { return value(); }
    const T& operator*() const { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    template <typename F>
    auto and_then(F&& f) -> decltype(f(std::declval<T&>()))
    {
        if (!has_value())
            return release_error();
        return f(value());
    }

private:
    std::variant<T, E> m_storage;
};

template <typename E>
class [[nodiscard]] Result<void, E> {
public:
    Result() = default;
    Result(E error)
        : m_error(std::move(error))
        , m_failed(true)
    {
    }
    bool has_value() const { return !m_failed; }
    explicit operator bool() const { return has_value(); }
    void value() const { VGPU_VERIFY(has_value()); }
    void release_value() const { VGPU_VERIFY(has_value()); }
    const E& error() const
    {
        VGPU_VERIFY(m_failed);
        return m_error;
    }
    E release_error()
    {
        VGPU_VERIFY(m_failed);
        return std::move(m_error);
    }

private:
    E m_error {};
    bool m_failed = false;
};

} // namespace vgpu

// Evaluates a Result; on failure returns its error from the enclosing function, otherwise yields
// the value. GCC/Clang statement expression (as SerenityOS AK/Try.h).
#define TRY(expression)                                                                            \
    ({                                                                                             \
        auto&& _vgpu_try_result = (expression);                                                    \
        if (!_vgpu_try_result.has_value()) [[unlikely]]                                            \
            return _vgpu_try_result.release_error();                                               \
        _vgpu_try_result.release_value();                                                          \
    })
