#include "harness/backend_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace vgpu::harness {

std::string backend_binary() { return VGPU_BACKEND_BINARY; }

std::string make_temp_dir()
{
    std::string pattern = "/tmp/vgpu-harness-XXXXXX";
    if (!::mkdtemp(pattern.data()))
        throw std::runtime_error("mkdtemp");
    return pattern;
}

namespace {
int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}
} // namespace

BackendProcess BackendProcess::spawn(
    const std::vector<std::string>& args, int keep_fd, const std::string& binary_path)
{
    BackendProcess p;
    p.m_dir = make_temp_dir();
    p.m_log_path = p.m_dir + "/backend.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(
        &actions, STDERR_FILENO, p.m_log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    if (keep_fd >= 0)
        posix_spawn_file_actions_adddup2(&actions, keep_fd, 3); // clears CLOEXEC on fd 3
    std::vector<char*> argv;
    std::string binary = binary_path;
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&p.m_pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        throw std::runtime_error("posix_spawn " + binary);
    return p;
}

BackendProcess BackendProcess::listen(const std::vector<std::string>& extra_args)
{
    std::string dir = make_temp_dir();
    std::string socket = dir + "/vhost.sock";
    std::vector<std::string> args { "--socket-path", socket };
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return wait_for_socket(spawn(args, -1), dir, socket);
}

BackendProcess BackendProcess::listen_binary(
    const std::string& binary, const std::vector<std::string>& extra_args)
{
    std::string dir = make_temp_dir();
    std::string socket = dir + "/vhost.sock";
    std::vector<std::string> args = extra_args;
    args.push_back("--socket-path=" + socket);
    return wait_for_socket(spawn(args, -1, binary), dir, socket);
}

BackendProcess BackendProcess::wait_for_socket(
    BackendProcess p, const std::string& dir, const std::string& socket)
{
    p.m_socket_path = socket;
    p.m_socket_dir = dir;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    struct stat st { };
    while (::stat(socket.c_str(), &st) != 0) {
        if (!p.alive() || std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("backend did not create its socket; log:\n" + p.log());
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return p;
}

BackendProcess BackendProcess::with_fd(Fd& peer, const std::vector<std::string>& extra_args)
{
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        throw std::runtime_error("socketpair");
    Fd ours(pair[0]), theirs(pair[1]);
    std::vector<std::string> args { "--fd=3" };
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    // dup2(3, 3) would keep CLOEXEC: make sure the source is not 3 already.
    Fd high(::fcntl(theirs.get(), F_DUPFD_CLOEXEC, 10));
    BackendProcess p = spawn(args, high.get());
    peer = std::move(ours);
    return p;
}

BackendProcess::Output BackendProcess::run_to_completion(const std::vector<std::string>& args)
{
    std::string dir = make_temp_dir();
    // A backend that should have exited but serves instead is stopped (exit code 124).
    std::string command = "timeout -k 2 10 " + backend_binary();
    for (const auto& a : args)
        command += " '" + a + "'";
    command += " >" + dir + "/out 2>" + dir + "/err";
    int status = std::system(command.c_str());
    Output output { decode_status(status), slurp(dir + "/out"), slurp(dir + "/err") };
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return output;
}

BackendProcess::BackendProcess(BackendProcess&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1))
    , m_status(other.m_status)
    , m_dir(std::move(other.m_dir))
    , m_socket_dir(std::move(other.m_socket_dir))
    , m_socket_path(std::move(other.m_socket_path))
    , m_log_path(std::move(other.m_log_path))
{
}

BackendProcess::~BackendProcess()
{
    if (m_pid > 0 && alive()) {
        ::kill(m_pid, SIGKILL);
        int status;
        ::waitpid(m_pid, &status, 0);
    }
    // The log and socket directories are ours; a moved-from process has none.
    std::error_code ignored;
    if (!m_dir.empty())
        std::filesystem::remove_all(m_dir, ignored);
    if (!m_socket_dir.empty())
        std::filesystem::remove_all(m_socket_dir, ignored);
}

bool BackendProcess::alive()
{
    if (m_status)
        return false;
    int status;
    pid_t r = ::waitpid(m_pid, &status, WNOHANG);
    if (r == m_pid) {
        m_status = decode_status(status);
        return false;
    }
    return true;
}

void BackendProcess::signal(int signo) { ::kill(m_pid, signo); }

std::optional<int> BackendProcess::wait_exit(std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (alive()) {
        if (std::chrono::steady_clock::now() > deadline)
            return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return m_status;
}

std::string BackendProcess::log() const { return slurp(m_log_path); }

} // namespace vgpu::harness
