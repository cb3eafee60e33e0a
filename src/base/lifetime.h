// Lifetime: for callbacks that may run after their object is gone (tasks posted to the event
// loop, results a worker hands back). The object owns a Lifetime and wraps such callbacks with
// guard(): once the object (and with it the Lifetime) is destroyed, the wrapped callback does
// nothing. Checked and run on one thread (the loop's), so nothing can end it in between.
#pragma once

#include <memory>
#include <utility>

namespace vgpu {

class Lifetime {
public:
    Lifetime() = default;
    Lifetime(const Lifetime&) = delete;
    Lifetime& operator=(const Lifetime&) = delete;

    class Weak {
    public:
        bool alive() const { return !m_token.expired(); }

    private:
        friend class Lifetime;
        explicit Weak(std::weak_ptr<const char> token)
            : m_token(std::move(token))
        {
        }
        std::weak_ptr<const char> m_token;
    };
    Weak weak() const { return Weak(m_token); }

    template <typename F>
    auto guard(F f) const
    {
        return [weak = weak(), f = std::move(f)](auto&&... args) mutable {
            if (weak.alive())
                f(std::forward<decltype(args)>(args)...);
        };
    }

private:
    std::shared_ptr<const char> m_token = std::make_shared<const char>('\0');
};

} // namespace vgpu
