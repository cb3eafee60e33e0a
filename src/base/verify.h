// VGPU_VERIFY: an always-on internal invariant check. Never use it on guest, frontend or consumer
// data: those get an error, not an abort.
#pragma once

namespace vgpu {
[[noreturn]] void verification_failed(const char* expression, const char* file, int line);
}

#define VGPU_VERIFY(expression)                                                                    \
    do {                                                                                           \
        if (!(expression)) [[unlikely]]                                                            \
            ::vgpu::verification_failed(#expression, __FILE__, __LINE__);                          \
    } while (0)
