// Virtio feature bits the transport layer knows (virtio 1.3 §6 "Reserved Feature Bits").
#pragma once

#include <cstdint>

namespace vgpu::virtio {

constexpr uint64_t feature_bit(unsigned bit) { return uint64_t(1) << bit; }

constexpr unsigned F_NOTIFY_ON_EMPTY = 24;
constexpr unsigned F_RING_INDIRECT_DESC = 28;
constexpr unsigned F_RING_EVENT_IDX = 29;
constexpr unsigned F_VERSION_1 = 32;
constexpr unsigned F_RING_RESET = 40;

// Device status bits (virtio 1.3 §2.1).
constexpr uint8_t STATUS_ACKNOWLEDGE = 1;
constexpr uint8_t STATUS_DRIVER = 2;
constexpr uint8_t STATUS_DRIVER_OK = 4;
constexpr uint8_t STATUS_FEATURES_OK = 8;
constexpr uint8_t STATUS_NEEDS_RESET = 64;
constexpr uint8_t STATUS_FAILED = 128;

} // namespace vgpu::virtio
