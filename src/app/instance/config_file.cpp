#include "app/instance/config_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/fd.h"

namespace vgpu::instance {

namespace {

std::string_view trim(std::string_view text)
{
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
        text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
        text.remove_suffix(1);
    return text;
}

bool printable(std::string_view text)
{
    return std::all_of(text.begin(), text.end(),
        [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
}

} // namespace

Result<ConfigFile> parse_config(
    std::string_view text, const std::string& path, const KeyRules& rules)
{
    ConfigFile config;
    config.path = path;
    std::vector<ConfigEntry>* entries = &config.global;
    std::set<std::string> seen; // single keys of the current section
    std::set<std::string> domains;
    unsigned number = 0;
    while (!text.empty()) {
        ++number;
        auto end = text.find('\n');
        std::string_view raw = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        auto line = trim(raw);
        if (line.empty() || line.front() == '#' || line.front() == ';')
            continue;
        if (!printable(line))
            return Error::format("{}:{}: a control character in the line", path, number);
        if (line.front() == '[') {
            if (line.back() != ']')
                return Error::format("{}:{}: a section is [domain NAME]", path, number);
            auto inner = trim(line.substr(1, line.size() - 2));
            if (inner == "domain")
                return Error::format("{}:{}: [domain] needs the domain's name", path, number);
            if (!inner.starts_with("domain ") && !inner.starts_with("domain\t"))
                return Error::format("{}:{}: unknown section [{}] (sections are [domain NAME])",
                    path, number, inner);
            auto name = std::string(trim(inner.substr(7)));
            if (name.empty())
                return Error::format("{}:{}: [domain] needs the domain's name", path, number);
            if (!domains.insert(name).second)
                return Error::format("{}:{}: a second [domain {}] section", path, number, name);
            config.domains.push_back({ name, number, {} });
            entries = &config.domains.back().entries;
            seen.clear();
            continue;
        }
        auto equals = line.find('=');
        if (equals == std::string_view::npos)
            return Error::format("{}:{}: expected 'key = value'", path, number);
        auto key = std::string(trim(line.substr(0, equals)));
        auto value = std::string(trim(line.substr(equals + 1)));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
        if (key.empty())
            return Error::format("{}:{}: expected 'key = value'", path, number);
        auto kind = rules(key);
        switch (kind) {
        case KeyKind::Unknown:
            return Error::format("{}:{}: unknown key '{}'", path, number, key);
        case KeyKind::CommandLineOnly:
            return Error::format(
                "{}:{}: '{}' can only be given on the command line", path, number, key);
        case KeyKind::Flag:
            if (auto flag = parse_bool(value); !flag)
                return Error::format("{}:{}: {}: {}", path, number, key, flag.error().message);
            [[fallthrough]];
        case KeyKind::Single:
            if (!seen.insert(key).second)
                return Error::format("{}:{}: '{}' again in the same section", path, number, key);
            break;
        case KeyKind::Repeatable:
            break;
        }
        if (value.empty() && kind != KeyKind::Flag)
            return Error::format("{}:{}: {}: no value", path, number, key);
        entries->push_back({ std::move(key), std::move(value), number });
    }
    return config;
}

Result<ConfigFile> load_config(const std::string& path, const KeyRules& rules)
{
    // A configuration file is a few lines; a device or a huge file is a mistake.
    auto bytes = TRY(read_whole_file(path, size_t(1) << 20));
    std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return parse_config(text, path, rules);
}

Result<const ConfigSection*> find_section(
    const ConfigFile& config, const std::optional<DomainIdentity>& domain)
{
    if (!domain)
        return static_cast<const ConfigSection*>(nullptr);
    for (const auto& section : config.domains)
        if (section.domain == domain->name)
            return &section;
    if (!domain->maybe_truncated)
        return static_cast<const ConfigSection*>(nullptr);
    const ConfigSection* found = nullptr;
    for (const auto& section : config.domains) {
        if (!section.domain.starts_with(domain->name))
            continue;
        if (found)
            return Error::format(
                "{}: libvirt cuts domain names to 20 characters in its file names, and "
                "'{}' starts both [domain {}] (line {}) and [domain {}] (line {})",
                config.path, domain->name, found->domain, found->line, section.domain,
                section.line);
        found = &section;
    }
    return found;
}

Result<std::vector<ConfigEntry>> select_entries(
    const ConfigFile& config, const std::optional<DomainIdentity>& domain)
{
    const ConfigSection* section = TRY(find_section(config, domain));
    if (!section)
        return config.global;
    std::set<std::string> replaced;
    for (const auto& entry : section->entries)
        replaced.insert(entry.key);
    std::vector<ConfigEntry> entries;
    for (const auto& entry : config.global)
        if (!replaced.contains(entry.key))
            entries.push_back(entry);
    entries.insert(entries.end(), section->entries.begin(), section->entries.end());
    return entries;
}

Result<std::string> expand(std::string_view value, const Substitutions& substitutions)
{
    std::string out;
    for (size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (c == '{' && i + 1 < value.size() && value[i + 1] == '{') {
            out += '{';
            ++i;
            continue;
        }
        if (c != '{') {
            out += c;
            continue;
        }
        auto close = value.find('}', i);
        if (close == std::string_view::npos)
            return Error::format("'{{' without '}}' (a literal brace is '{{{{')");
        auto name = value.substr(i + 1, close - i - 1);
        if (name == "domain")
            out += substitutions.domain;
        else if (name == "pid")
            out += std::to_string(substitutions.pid);
        else
            return Error::format("unknown placeholder {{{}}} (known: {{domain}}, {{pid}})", name);
        i = close;
    }
    return out;
}

Result<bool> parse_bool(std::string_view text)
{
    for (auto yes : { "true", "yes", "on", "1" })
        if (text == yes)
            return true;
    for (auto no : { "false", "no", "off", "0" })
        if (text == no)
            return false;
    return Error::format("expected true or false, not '{}'", text);
}

} // namespace vgpu::instance
