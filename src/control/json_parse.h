// Parsing JSON from a peer (a control client, or the server for vgpu-ctl) with a depth limit.
// nlohmann's parser is iterative, but copying, comparing and dumping a value recurse once per
// level: a line of 300000 '[' would overflow the stack later. Deeper values are refused while
// parsing, through the parser callback, before any of that.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace vgpu::control {

// Containers inside containers: {"a": [1]} is 2 deep.
constexpr int max_json_depth = 64;

enum class JsonParse {
    Ok,
    Malformed,
    TooDeep
};

// Never throws; on anything but Ok, `out` is unspecified.
inline JsonParse parse_json(std::string_view text, nlohmann::json& out)
{
    bool too_deep = false;
    auto limit = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
        using Event = nlohmann::json::parse_event_t;
        // `depth` counts the containers already open around this one.
        if ((event == Event::object_start || event == Event::array_start)
            && depth >= max_json_depth)
            too_deep = true;
        return !too_deep; // keep nothing once too deep: the rest is parsed and dropped
    };
    out = nlohmann::json::parse(text, limit, false);
    if (too_deep)
        return JsonParse::TooDeep;
    return out.is_discarded() ? JsonParse::Malformed : JsonParse::Ok;
}

} // namespace vgpu::control
