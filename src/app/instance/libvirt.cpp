#include "app/instance/libvirt.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vgpu::instance {

namespace {

bool all_digits(std::string_view text)
{
    return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

std::string read_small_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

std::optional<LibvirtName> parse_pid_file_name(std::string_view file_name)
{
    if (!file_name.ends_with(LIBVIRT_PID_SUFFIX))
        return std::nullopt;
    file_name.remove_suffix(LIBVIRT_PID_SUFFIX.size());
    auto dash = file_name.find('-');
    if (dash == std::string_view::npos || !all_digits(file_name.substr(0, dash)) || dash > 9)
        return std::nullopt;
    LibvirtName parsed;
    parsed.id = std::atoi(std::string(file_name.substr(0, dash)).c_str());
    auto rest = file_name.substr(dash + 1);
    // The alias: libvirt's own are video<N>; a user's start with "ua-" (and may hold dashes, as
    // the name may).
    size_t split = std::string_view::npos;
    auto video = rest.rfind("-video");
    if (video != std::string_view::npos && all_digits(rest.substr(video + 6)))
        split = video;
    else if (auto user = rest.find("-ua-"); user != std::string_view::npos)
        split = user;
    else
        split = rest.rfind('-');
    if (split == std::string_view::npos || split == 0 || split + 1 >= rest.size())
        return std::nullopt;
    parsed.name = std::string(rest.substr(0, split));
    parsed.alias = std::string(rest.substr(split + 1));
    parsed.maybe_truncated = parsed.name.size() >= LIBVIRT_SHORT_NAME_MAX;
    return parsed;
}

std::vector<std::string> libvirt_state_dirs()
{
    std::vector<std::string> dirs;
    if (::geteuid() == 0)
        dirs.emplace_back("/run/libvirt/qemu");
    if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
        dirs.push_back(std::string(runtime) + "/libvirt/qemu/run");
    return dirs;
}

std::optional<LibvirtStart> detect_libvirt_start()
{
    DIR* fds = ::opendir("/proc/self/fd");
    if (!fds)
        return std::nullopt;
    std::optional<LibvirtStart> found;
    while (dirent* entry = ::readdir(fds)) {
        if (!all_digits(entry->d_name))
            continue;
        char target[4096];
        auto link = std::string("/proc/self/fd/") + entry->d_name;
        auto n = ::readlink(link.c_str(), target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        std::string path(target, size_t(n));
        auto slash = path.rfind('/');
        auto parsed = parse_pid_file_name(
            slash == std::string::npos ? path : std::string_view(path).substr(slash + 1));
        if (parsed) {
            found = LibvirtStart { std::move(*parsed), path };
            break;
        }
    }
    ::closedir(fds);
    return found;
}

std::vector<LibvirtBackend> list_libvirt_backends(const std::string& dir)
{
    std::vector<LibvirtBackend> backends;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        auto file = entry.path().filename().string();
        auto parsed = parse_pid_file_name(file);
        if (!parsed)
            continue;
        auto text = read_small_file(entry.path().string());
        while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
            text.pop_back();
        if (!all_digits(text) || text.size() > 9)
            continue;
        pid_t pid = std::atoi(text.c_str());
        if (!alive(pid))
            continue;
        backends.push_back({ std::move(*parsed), pid, entry.path().string() });
    }
    return backends;
}

std::string full_domain_name(const std::string& dir, const LibvirtName& name)
{
    if (!name.maybe_truncated)
        return name.name;
    std::error_code error;
    std::string found;
    auto id = std::to_string(name.id);
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        auto file = entry.path().filename().string();
        if (!file.ends_with(".xml") || !file.starts_with(name.name))
            continue;
        // The status file's <domain type='...' id='N'>: the running domain with our id.
        auto text = read_small_file(entry.path().string());
        auto domain = text.find("<domain ");
        if (domain == std::string::npos)
            continue;
        auto tag_end = text.find('>', domain);
        auto tag = text.substr(domain, tag_end == std::string::npos ? 0 : tag_end - domain);
        if (tag.find("id='" + id + "'") == std::string::npos
            && tag.find("id=\"" + id + "\"") == std::string::npos)
            continue;
        if (!found.empty())
            return name.name; // two candidates: say no more than we know
        found = file.substr(0, file.size() - 4);
    }
    return found.empty() ? name.name : found;
}

} // namespace vgpu::instance
