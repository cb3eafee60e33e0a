// vgpu-ctl's human-readable output and argument parsing: pure functions of JSON values and
// strings, so they are tested without a server. They never throw, whatever the server sends:
// a field of an unexpected type prints as its JSON text (or "-" when missing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace vgpu::ctl {

using json = nlohmann::json;

struct Mode {
    uint32_t width = 0;
    uint32_t height = 0;
};
// "WIDTHxHEIGHT", decimal; the server checks the range.
Result<Mode> parse_mode(std::string_view text);
// A non-negative decimal integer that fits 32 bits (an output index, a count).
Result<uint32_t> parse_index(std::string_view text);

// RFC 4648 base64 (padding optional, no whitespace); nullopt when malformed.
std::optional<std::vector<std::byte>> base64_decode(std::string_view text);

// object[key], or null when `object` is not an object or has no such key.
const json& field(const json& object, const char* key);
// A scalar for people: strings as they are, yes/no, "-" for null; anything else as JSON.
std::string text(const json& value);

// Each returns whole lines, each ended by '\n'.
std::string format_version(const json& value);
// Any value as aligned "key: value" lines: nested objects as dotted keys, lists of scalars
// joined by commas, byte counts (keys that say "bytes") also in KiB/MiB/GiB.
std::string format_key_values(const json& value);
// query-outputs as a table.
std::string format_outputs(const json& value);
// query-stats: the counters as key-values, then the flip latency histogram.
std::string format_stats(const json& value);
// crc-read/crc-stop: "overflow N" when entries were lost, then one DRM CRC line per entry;
// only entries with a frame after `after` when given.
std::string format_crc_entries(const json& value, std::optional<uint64_t> after = std::nullopt);
// A CRC entry or event data ({"frame", "crc", "line"?}) as a DRM CRC line, without '\n'.
std::string crc_line(const json& entry);

} // namespace vgpu::ctl
