#include "app/tools/ctl_backends.h"

#include <unistd.h>

#include <algorithm>
#include <map>

#include "app/instance/libvirt.h"
#include "app/instance/registry.h"

namespace vgpu::ctl {

namespace {

std::string program_of(pid_t pid)
{
    char target[4096];
    auto link = "/proc/" + std::to_string(pid) + "/exe";
    auto n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0)
        return "?";
    std::string path(target, size_t(n));
    if (path.ends_with(" (deleted)"))
        path.resize(path.size() - 10);
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool same_domain(const Backend& backend, const std::string& name)
{
    if (backend.domain == name)
        return true;
    // A name libvirt cut short: the backend's domain is the first 20 bytes of NAME.
    return backend.domain.size() == instance::LIBVIRT_SHORT_NAME_MAX
        && name.size() > backend.domain.size() && name.starts_with(backend.domain);
}

std::string or_dash(const std::optional<std::string>& text) { return text ? *text : "-"; }

} // namespace

std::vector<Backend> find_backends()
{
    std::map<pid_t, Backend> by_pid;
    if (auto dir = instance::runtime_dir())
        for (auto& record : instance::read_records(*dir)) {
            Backend& backend = by_pid[record.pid];
            backend.pid = record.pid;
            backend.program = "vgpu-display";
            backend.ours = true;
            backend.domain = record.domain;
            backend.alias = record.alias;
            backend.control = record.control;
            backend.export_path = record.export_path;
            backend.log = record.log;
        }
    for (const auto& dir : instance::libvirt_state_dirs())
        for (const auto& found : instance::list_libvirt_backends(dir)) {
            Backend& backend = by_pid[found.pid];
            if (!backend.ours) {
                backend.pid = found.pid;
                backend.program = program_of(found.pid);
            }
            backend.domain = instance::full_domain_name(dir, found.name);
            backend.alias = found.name.alias;
            backend.pid_file = found.pid_file;
        }
    std::vector<Backend> backends;
    backends.reserve(by_pid.size());
    for (auto& [pid, backend] : by_pid)
        backends.push_back(std::move(backend));
    std::stable_sort(backends.begin(), backends.end(),
        [](const Backend& a, const Backend& b) { return a.domain < b.domain; });
    return backends;
}

CtlResult<Backend> backend_of_domain(const std::vector<Backend>& backends, const std::string& name)
{
    std::vector<const Backend*> matches;
    for (const auto& backend : backends)
        if (!backend.domain.empty() && same_domain(backend, name))
            matches.push_back(&backend);
    if (matches.empty())
        return failure(Exit::Connection,
            "no backend runs for domain '{}' (vgpu-ctl list shows the running ones)", name);
    if (matches.size() > 1) {
        std::string aliases;
        for (const auto* m : matches)
            aliases += fmt::format("{}{} (pid {})", aliases.empty() ? "" : ", ", m->alias, m->pid);
        return failure(Exit::Usage,
            "domain '{}' has {} vhost-user-gpu backends: {}; pick one with --control", name,
            matches.size(), aliases);
    }
    const Backend& backend = *matches.front();
    if (!backend.ours)
        return failure(Exit::Failed,
            "domain '{}' runs {} (pid {}), not vgpu-display: it has no control socket", name,
            backend.program, backend.pid);
    if (!backend.control)
        return failure(Exit::Failed,
            "domain '{}''s vgpu-display (pid {}) has no control socket: set 'control' in its "
            "configuration file (docs/libvirt.md)",
            name, backend.pid);
    return backend;
}

std::string format_backends(const std::vector<Backend>& backends)
{
    if (backends.empty())
        return "no backends running\n";
    std::string out = fmt::format(
        "{:<8} {:<20} {:<8} {:<14} {}\n", "PID", "DOMAIN", "VIDEO", "PROGRAM", "CONTROL");
    for (const auto& b : backends)
        out += fmt::format("{:<8} {:<20} {:<8} {:<14} {}\n", b.pid,
            b.domain.empty() ? "-" : b.domain, b.alias.empty() ? "-" : b.alias, b.program,
            or_dash(b.control));
    return out;
}

json backends_json(const std::vector<Backend>& backends)
{
    json list = json::array();
    auto nullable = [](const std::string& text) {
        return text.empty() ? json(nullptr) : json(text);
    };
    for (const auto& b : backends)
        list.push_back({
            { "pid", b.pid },
            { "program", b.program },
            { "domain", nullable(b.domain) },
            { "alias", nullable(b.alias) },
            { "vgpu-display", b.ours },
            { "control", b.control ? json(*b.control) : json(nullptr) },
            { "export", b.export_path ? json(*b.export_path) : json(nullptr) },
            { "log", nullable(b.log) },
            { "pid-file", nullable(b.pid_file) },
        });
    return list;
}

} // namespace vgpu::ctl
