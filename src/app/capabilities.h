// What this build can provide on this host, for --print-capabilities (libvirt reads it and
// refuses to start a domain that asks for a feature not listed; listing one we cannot provide,
// such as render-node without a DRM render node, breaks the domain instead).
#pragma once

#include <string>

namespace vgpu::app {

std::string capabilities_json();

} // namespace vgpu::app
