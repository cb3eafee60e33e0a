// vnc-probe: a VNC client for the tests (libvncclient), driven line by line on stdin so that a
// test can interleave what it asks of the guest with what the client sees.
//
//   vnc-probe HOST:PORT [--encodings "raw"] [--password P] [--no-cursor]
//
// Prints, as they happen: "connected W H NAME", "resize W H", "cursor W H XHOT YHOT",
// "cursorpos X Y" (the hot spot), "update N" (every 50th FramebufferUpdate, and the first).
// Commands:
//   frame PATH        the frame buffer now, as a PPM (RGB): answers "frame W H UPDATES"
//   key KEYSYM 0|1    a key event (keysym in hex or decimal)
//   pointer X Y MASK  a pointer event
//   quit
// Exits 1 with a line on stderr when the connection fails or ends.
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <rfb/rfbclient.h>

namespace {

uint64_t g_updates = 0;
int g_width = 0, g_height = 0;
std::string g_password;

void finished(rfbClient* client)
{
    ++g_updates;
    if (client->width != g_width || client->height != g_height) {
        g_width = client->width;
        g_height = client->height;
        std::printf("resize %d %d\n", g_width, g_height);
    }
    if (g_updates == 1 || g_updates % 50 == 0)
        std::printf("update %llu\n", static_cast<unsigned long long>(g_updates));
    std::fflush(stdout);
}

void cursor_shape(rfbClient*, int xhot, int yhot, int width, int height, int)
{
    std::printf("cursor %d %d %d %d\n", width, height, xhot, yhot);
    std::fflush(stdout);
}

rfbBool cursor_position(rfbClient*, int x, int y)
{
    std::printf("cursorpos %d %d\n", x, y);
    std::fflush(stdout);
    return TRUE;
}

char* password(rfbClient*) { return strdup(g_password.c_str()); }

bool write_ppm(rfbClient* client, const char* path)
{
    FILE* f = std::fopen(path, "wb");
    if (!f)
        return false;
    std::fprintf(f, "P6\n%d %d\n255\n", client->width, client->height);
    // rfbGetClient(8, 3, 4) on little-endian: R, G, B, unused in memory.
    for (int i = 0; i < client->width * client->height; ++i)
        std::fwrite(client->frameBuffer + size_t(i) * 4, 1, 3, f);
    return std::fclose(f) == 0;
}

void quiet(const char*, ...) { }

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(
            stderr, "usage: vnc-probe HOST:PORT [--encodings E] [--password P] [--no-cursor]\n");
        return 2;
    }
    std::string target = argv[1], encodings;
    bool remote_cursor = true;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--encodings" && i + 1 < argc)
            encodings = argv[++i];
        else if (a == "--password" && i + 1 < argc)
            g_password = argv[++i];
        else if (a == "--no-cursor")
            remote_cursor = false;
        else
            return std::fprintf(stderr, "vnc-probe: unknown option %s\n", a.c_str()), 2;
    }
    size_t colon = target.rfind(':');
    if (colon == std::string::npos)
        return std::fprintf(stderr, "vnc-probe: HOST:PORT\n"), 2;
    if (!std::getenv("VNC_PROBE_VERBOSE"))
        rfbClientLog = quiet;
    rfbClient* client = rfbGetClient(8, 3, 4);
    client->serverHost = strdup(target.substr(0, colon).c_str());
    client->serverPort = std::atoi(target.substr(colon + 1).c_str());
    if (!encodings.empty())
        client->appData.encodingsString = strdup(encodings.c_str());
    client->appData.useRemoteCursor = remote_cursor;
    client->FinishedFrameBufferUpdate = finished;
    client->GotCursorShape = cursor_shape;
    client->HandleCursorPos = cursor_position;
    client->GetPassword = password;
    int fake_argc = 1;
    char name[] = "vnc-probe";
    char* fake_argv[] = { name, nullptr };
    if (!rfbInitClient(client, &fake_argc, fake_argv)) {
        std::fprintf(stderr, "vnc-probe: cannot connect to %s\n", target.c_str());
        return 1; // rfbInitClient freed the client
    }
    g_width = client->width;
    g_height = client->height;
    std::printf("connected %d %d %s\n", client->width, client->height,
        client->desktopName ? client->desktopName : "");
    std::fflush(stdout);

    std::string line_buffer;
    for (;;) {
        pollfd p[2] = { { 0, POLLIN, 0 }, { client->sock, POLLIN, 0 } };
        if (!client->buffered)
            ::poll(p, 2, 1000);
        if (client->buffered || (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!HandleRFBServerMessage(client)) {
                std::fprintf(stderr, "vnc-probe: the server closed the connection\n");
                return 1;
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP)))
            continue;
        char chunk[4096];
        ssize_t n = ::read(0, chunk, sizeof(chunk));
        if (n <= 0)
            break;
        line_buffer.append(chunk, size_t(n));
        for (size_t eol; (eol = line_buffer.find('\n')) != std::string::npos;) {
            std::string line = line_buffer.substr(0, eol);
            line_buffer.erase(0, eol + 1);
            char path[1024];
            long keysym = 0;
            int down = 0, x = 0, y = 0, mask = 0;
            if (std::sscanf(line.c_str(), "frame %1023s", path) == 1) {
                if (!write_ppm(client, path))
                    return std::fprintf(stderr, "vnc-probe: cannot write %s\n", path), 1;
                std::printf("frame %d %d %llu\n", client->width, client->height,
                    static_cast<unsigned long long>(g_updates));
            } else if (std::sscanf(line.c_str(), "key %li %d", &keysym, &down) == 2) {
                SendKeyEvent(client, uint32_t(keysym), down ? TRUE : FALSE);
                std::printf("ok\n");
            } else if (std::sscanf(line.c_str(), "pointer %d %d %d", &x, &y, &mask) == 3) {
                SendPointerEvent(client, x, y, mask);
                std::printf("ok\n");
            } else if (line == "quit") {
                rfbClientCleanup(client);
                return 0;
            } else {
                std::printf("error unknown command: %s\n", line.c_str());
            }
            std::fflush(stdout);
        }
    }
    rfbClientCleanup(client);
    return 0;
}
