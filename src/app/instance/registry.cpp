#include "app/instance/registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/fd.h"

namespace vgpu::instance {

namespace {

using nlohmann::json;

std::string record_path(const std::string& dir, pid_t pid)
{
    return dir + "/" + std::to_string(pid) + ".json";
}

// The process is alive and runs a program named vgpu-display (/proc/PID/cmdline's first word).
bool is_backend(pid_t pid)
{
    if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM))
        return false;
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string argv0;
    std::getline(in, argv0, '\0');
    auto slash = argv0.rfind('/');
    return (slash == std::string::npos ? argv0 : argv0.substr(slash + 1)) == "vgpu-display";
}

std::optional<std::string> optional_string(const json& object, const char* key)
{
    auto it = object.find(key);
    if (it == object.end() || !it->is_string())
        return std::nullopt;
    return it->get<std::string>();
}

} // namespace

std::optional<std::string> runtime_dir()
{
    if (const char* dir = std::getenv(RUNTIME_DIR_ENVIRONMENT); dir && *dir)
        return std::string(dir);
    if (::geteuid() == 0)
        return std::string("/run/vgpu-display");
    if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
        return std::string(runtime) + "/vgpu-display";
    return std::nullopt;
}

std::string record_json(const InstanceRecord& record)
{
    json object = {
        { "pid", record.pid },
        { "domain", record.domain.empty() ? json(nullptr) : json(record.domain) },
        { "alias", record.alias.empty() ? json(nullptr) : json(record.alias) },
        { "control", record.control ? json(*record.control) : json(nullptr) },
        { "export", record.export_path ? json(*record.export_path) : json(nullptr) },
        { "log", record.log },
        { "config", record.config.empty() ? json(nullptr) : json(record.config) },
        { "version", record.version },
    };
    return object.dump(2) + "\n";
}

std::optional<InstanceRecord> parse_record(const std::string& text)
{
    auto object = json::parse(text, nullptr, false);
    if (object.is_discarded() || !object.is_object())
        return std::nullopt;
    auto pid = object.find("pid");
    if (pid == object.end() || !pid->is_number_integer())
        return std::nullopt;
    InstanceRecord record;
    record.pid = pid->get<pid_t>();
    record.domain = optional_string(object, "domain").value_or("");
    record.alias = optional_string(object, "alias").value_or("");
    record.control = optional_string(object, "control");
    record.export_path = optional_string(object, "export");
    record.log = optional_string(object, "log").value_or("");
    record.config = optional_string(object, "config").value_or("");
    record.version = optional_string(object, "version").value_or("");
    return record;
}

Result<std::string> write_record(const std::string& dir, const InstanceRecord& record)
{
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error)
        return Error::format("{}: {}", dir, error.message());
    // Records of backends that were killed: nobody else removes them.
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        auto stem = entry.path().stem().string();
        if (entry.path().extension() == ".json" && !stem.empty()
            && stem.find_first_not_of("0123456789") == std::string::npos && stem.size() < 10
            && !is_backend(pid_t(std::stoi(stem))))
            std::filesystem::remove(entry.path(), error);
    }
    auto path = record_path(dir, record.pid);
    auto temporary = path + ".tmp";
    int raw = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (raw < 0)
        return Error::from_errno(temporary);
    Fd fd(raw);
    auto text = record_json(record);
    if (::write(fd.get(), text.data(), text.size()) != ssize_t(text.size())) {
        auto failure = Error::from_errno(temporary);
        ::unlink(temporary.c_str());
        return failure;
    }
    if (::rename(temporary.c_str(), path.c_str()) < 0) {
        auto failure = Error::from_errno(path);
        ::unlink(temporary.c_str());
        return failure;
    }
    return path;
}

void remove_record(const std::string& dir, pid_t pid) { ::unlink(record_path(dir, pid).c_str()); }

std::vector<InstanceRecord> read_records(const std::string& dir)
{
    std::vector<InstanceRecord> records;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        if (entry.path().extension() != ".json")
            continue;
        std::ifstream in(entry.path());
        std::stringstream text;
        text << in.rdbuf();
        auto record = parse_record(text.str());
        if (!record || entry.path().stem().string() != std::to_string(record->pid)
            || !is_backend(record->pid))
            continue;
        records.push_back(std::move(*record));
    }
    std::sort(records.begin(), records.end(),
        [](const InstanceRecord& a, const InstanceRecord& b) { return a.pid < b.pid; });
    return records;
}

} // namespace vgpu::instance
