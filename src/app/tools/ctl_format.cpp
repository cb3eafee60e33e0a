#include "app/tools/ctl_format.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "app/tools/ctl_connection.h"
#include "display/capture/image.h"

namespace vgpu::ctl {

namespace {

using Rows = std::vector<std::pair<std::string, std::string>>;

bool is_scalar(const json& value) { return value.is_primitive(); }

} // namespace

const json& field(const json& object, const char* key)
{
    static const json missing;
    if (!object.is_object())
        return missing;
    auto it = object.find(key);
    return it == object.end() ? missing : *it;
}

std::string text(const json& value)
{
    if (value.is_string())
        return value.get<std::string>();
    if (value.is_boolean())
        return value.get<bool>() ? "yes" : "no";
    if (value.is_null())
        return "-";
    if (value.is_array() && std::all_of(value.begin(), value.end(), is_scalar)) {
        if (value.empty())
            return "none";
        std::string joined;
        for (const auto& element : value)
            joined += (joined.empty() ? "" : ", ") + text(element);
        return joined;
    }
    return dump(value);
}

namespace {

std::optional<uint64_t> unsigned_value(const json& value)
{
    if (value.is_number_unsigned())
        return value.get<uint64_t>();
    return std::nullopt;
}

// 268435456 -> "268435456 (256.0 MiB)".
std::string with_binary_size(uint64_t bytes)
{
    static constexpr const char* units[] = { "KiB", "MiB", "GiB", "TiB" };
    if (bytes < 1024)
        return std::to_string(bytes);
    double scaled = double(bytes);
    size_t unit = 0;
    for (scaled /= 1024; scaled >= 1024 && unit + 1 < std::size(units); scaled /= 1024)
        ++unit;
    return fmt::format("{} ({:.1f} {})", bytes, scaled, units[unit]);
}

void flatten(const json& value, const std::string& key, Rows& rows)
{
    if (value.is_object() && !value.empty()) {
        for (const auto& [name, element] : value.items())
            flatten(element, key.empty() ? name : fmt::format("{}.{}", key, name), rows);
        return;
    }
    if (value.is_array() && !std::all_of(value.begin(), value.end(), is_scalar)) {
        for (size_t i = 0; i < value.size(); ++i)
            flatten(value[i], fmt::format("{}[{}]", key, i), rows);
        return;
    }
    auto number = unsigned_value(value);
    if (number && key.substr(key.rfind('.') + 1).find("bytes") != std::string::npos)
        rows.emplace_back(key, with_binary_size(*number));
    else
        rows.emplace_back(key, value.is_object() ? "-" : text(value));
}

std::string aligned(const Rows& rows)
{
    size_t width = 0;
    for (const auto& [key, value] : rows)
        width = std::max(width, key.size() + 1);
    std::string out;
    for (const auto& [key, value] : rows)
        out += fmt::format("{:<{}} {}\n", key + ":", width, value);
    return out;
}

std::string table(const std::vector<std::vector<std::string>>& cells)
{
    std::vector<size_t> widths;
    for (const auto& row : cells)
        for (size_t c = 0; c < row.size(); ++c) {
            widths.resize(std::max(widths.size(), row.size()));
            widths[c] = std::max(widths[c], row[c].size());
        }
    std::string out;
    for (const auto& row : cells) {
        std::string line;
        for (size_t c = 0; c < row.size(); ++c)
            line += c + 1 == row.size() ? row[c] : fmt::format("{:<{}}  ", row[c], widths[c]);
        out += line + "\n";
    }
    return out;
}

// The flip latency histogram (log2 buckets, each counted once, the last "inf") as summary and
// bucket rows; nullopt when it has another shape.
std::optional<Rows> histogram_rows(const std::string& key, const json& histogram)
{
    const json& buckets = field(histogram, "buckets");
    if (!buckets.is_array())
        return std::nullopt;
    std::vector<std::pair<std::string, uint64_t>> parsed; // label, count
    std::string previous = "0";
    uint64_t total = 0;
    for (const auto& bucket : buckets) {
        const json& le = field(bucket, "le");
        auto count = unsigned_value(field(bucket, "count"));
        if (!count || !(le.is_number() || le.is_string()))
            return std::nullopt;
        std::string bound = text(le);
        parsed.emplace_back(bound == "inf" ? "> " + previous : "<= " + bound, *count);
        previous = bound;
        total += *count;
    }
    Rows rows;
    std::string summary = fmt::format("count {}", total);
    auto sum = unsigned_value(field(histogram, "sum"));
    if (total && sum)
        summary += fmt::format(", mean {:.1f}", double(*sum) / double(total));
    for (auto [name, quantile] : { std::pair { "p50", 0.50 }, std::pair { "p99", 0.99 } }) {
        if (!total)
            break;
        auto target = uint64_t(std::ceil(quantile * double(total)));
        uint64_t running = 0;
        for (const auto& [label, count] : parsed) {
            running += count;
            if (running >= target) {
                summary += fmt::format(", {} {}", name, label);
                break;
            }
        }
    }
    rows.emplace_back(key, summary);
    for (const auto& [label, count] : parsed)
        if (count)
            rows.emplace_back(fmt::format("{} {}", key, label), std::to_string(count));
    return rows;
}

} // namespace

Result<Mode> parse_mode(std::string_view text)
{
    auto x = text.find('x');
    if (x == std::string_view::npos)
        return Error::format("'{}': expected WIDTHxHEIGHT, such as 1280x800", text);
    auto width = parse_index(text.substr(0, x));
    auto height = parse_index(text.substr(x + 1));
    if (!width || !height)
        return Error::format("'{}': expected WIDTHxHEIGHT, such as 1280x800", text);
    return Mode { *width, *height };
}

Result<uint32_t> parse_index(std::string_view text)
{
    if (text.empty() || text.size() > 10
        || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return Error::format("'{}' is not a non-negative integer", text);
    uint64_t value = 0;
    for (char c : text)
        value = value * 10 + uint64_t(c - '0');
    if (value > UINT32_MAX)
        return Error::format("'{}' is too large", text);
    return uint32_t(value);
}

std::optional<std::vector<std::byte>> base64_decode(std::string_view text)
{
    auto sextet = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    size_t padding = 0;
    while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=')
        ++padding;
    if (padding && text.size() % 4 != 0)
        return std::nullopt;
    text.remove_suffix(padding);
    if (text.size() % 4 == 1)
        return std::nullopt;
    std::vector<std::byte> out;
    out.reserve(text.size() / 4 * 3 + 2);
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        int value = sextet(c);
        if (value < 0)
            return std::nullopt;
        bits = (bits << 6) | uint32_t(value);
        if (++count == 4) {
            out.insert(out.end(), { std::byte(bits >> 16), std::byte(bits >> 8), std::byte(bits) });
            bits = 0;
            count = 0;
        }
    }
    if (count == 2)
        out.push_back(std::byte(bits >> 4));
    if (count == 3)
        out.insert(out.end(), { std::byte(bits >> 10), std::byte(bits >> 2) });
    return out;
}

std::string format_version(const json& value)
{
    if (const json& package = field(value, "package"); package.is_string())
        return package.get<std::string>() + "\n";
    if (value.is_object() && value.contains("major"))
        return fmt::format("{}.{}.{}\n", text(field(value, "major")), text(field(value, "minor")),
            text(field(value, "micro")));
    return format_key_values(value);
}

std::string format_key_values(const json& value)
{
    if (!value.is_object() && !value.is_array())
        return text(value) + "\n";
    if (value.empty())
        return "";
    Rows rows;
    flatten(value, "", rows);
    return aligned(rows);
}

std::string format_outputs(const json& value)
{
    if (!value.is_array())
        return format_key_values(value);
    bool plugged = std::any_of(value.begin(), value.end(),
        [](const json& o) { return o.is_object() && o.contains("plugged"); });
    std::vector<std::vector<std::string>> cells;
    cells.push_back({ "OUTPUT" });
    if (plugged)
        cells.back().push_back("PLUGGED");
    cells.back().insert(
        cells.back().end(), { "ENABLED", "SIZE", "RESOURCE", "FORMAT", "FRAMES", "FLIPS", "CRC" });
    for (const auto& output : value) {
        std::vector<std::string> row { text(field(output, "output")) };
        if (plugged)
            row.push_back(text(field(output, "plugged")));
        const json& crc = field(output, "crc-capture");
        row.insert(row.end(),
            { text(field(output, "enabled")),
                fmt::format("{}x{}", text(field(output, "width")), text(field(output, "height"))),
                text(field(output, "resource")), text(field(output, "format")),
                text(field(output, "frames")), text(field(output, "flips")),
                crc.is_boolean() ? (crc.get<bool>() ? "on" : "off") : text(crc) });
        cells.push_back(std::move(row));
    }
    return table(cells);
}

std::string format_stats(const json& value)
{
    if (!value.is_object())
        return format_key_values(value);
    static constexpr const char* histogram_key = "flip-latency-us";
    json counters = value;
    std::optional<Rows> histogram;
    if (value.contains(histogram_key)) {
        histogram = histogram_rows(histogram_key, value[histogram_key]);
        if (histogram)
            counters.erase(histogram_key);
    }
    Rows rows;
    flatten(counters, "", rows);
    if (histogram)
        rows.insert(rows.end(), histogram->begin(), histogram->end());
    return aligned(rows);
}

std::string crc_line(const json& entry)
{
    if (const json& line = field(entry, "line"); line.is_string())
        return line.get<std::string>();
    auto frame = unsigned_value(field(entry, "frame"));
    auto crc = unsigned_value(field(entry, "crc"));
    if (frame && crc && *crc <= UINT32_MAX)
        return display::capture::drm_crc_line(*frame, uint32_t(*crc));
    return dump(entry);
}

std::string format_crc_entries(const json& value, std::optional<uint64_t> after)
{
    std::string out;
    auto overflow = unsigned_value(field(value, "overflow"));
    if (overflow && *overflow && !after)
        out += fmt::format("overflow {}\n", *overflow);
    const json& entries = field(value, "entries");
    if (!entries.is_array()) {
        // No entry list: the server's own text, if any.
        if (const json& lines = field(value, "lines"); lines.is_string() && !after)
            return lines.get<std::string>();
        return out;
    }
    for (const auto& entry : entries) {
        auto frame = unsigned_value(field(entry, "frame"));
        if (after && frame && *frame <= *after)
            continue;
        out += crc_line(entry) + "\n";
    }
    return out;
}

} // namespace vgpu::ctl
