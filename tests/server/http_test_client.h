// A minimal blocking HTTP/1.1 client over POSIX sockets for tests that talk
// to a real server on loopback: send raw bytes, read one response (with
// Content-Length or chunked body), keep the connection for the next.
#ifndef ALIGNSERVE_TESTS_SERVER_HTTP_TEST_CLIENT_H_
#define ALIGNSERVE_TESTS_SERVER_HTTP_TEST_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace alignserve::testing {

struct HttpResponse {
  int status = 0;  // 0: no (complete) response
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // de-chunked
  std::vector<std::string> chunks;             // the chunks as received (chunked only)
};

class HttpTestClient {
 public:
  explicit HttpTestClient(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~HttpTestClient() { Close(); }
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  bool Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  // A request with a body; keep-alive unless close is set.
  bool Request(const std::string& method, const std::string& target, const std::string& body,
               const std::string& extra_headers = "", bool close = false) {
    return Send(method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers +
                "Content-Type: application/json\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n" + (close ? "Connection: close\r\n" : "") +
                "\r\n" + body);
  }
  // Reads one whole response, waiting up to timeout_ms for each read.
  HttpResponse Read(int timeout_ms = 30000) {
    HttpResponse r;
    std::string head;
    if (!ReadUntil("\r\n\r\n", &head, timeout_ms)) return r;
    const size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return r;
    size_t pos = line_end + 2;
    while (pos < head.size()) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos) end = head.size();
      const std::string line = head.substr(pos, end - pos);
      pos = end + 2;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[name] = line.substr(v);
    }
    if (r.headers["transfer-encoding"] == "chunked") {
      while (true) {
        std::string size_line;
        if (!ReadUntil("\r\n", &size_line, timeout_ms)) return r;
        const size_t size = std::strtoul(size_line.c_str(), nullptr, 16);
        std::string data;
        if (!ReadBytes(size + 2, &data, timeout_ms)) return r;
        if (size == 0) break;
        data.resize(size);
        r.chunks.push_back(data);
        r.body += data;
      }
    } else if (r.headers.count("content-length")) {
      if (!ReadBytes(std::strtoul(r.headers["content-length"].c_str(), nullptr, 10), &r.body,
                     timeout_ms)) {
        return r;
      }
    }
    r.status = std::atoi(status_line.substr(9, 3).c_str());
    return r;
  }
  // True if the server closed the connection (EOF) within timeout_ms;
  // data arriving meanwhile is kept.
  bool WaitClosed(int timeout_ms) {
    while (true) {
      const int n = Fill(timeout_ms);
      if (n == 0) return true;
      if (n < 0) return false;
    }
  }

 private:
  // Appends what arrives; returns bytes read, 0 on EOF, -1 on timeout/error.
  int Fill(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return -1;
    buffer_.append(buf, static_cast<size_t>(n));
    return static_cast<int>(n);
  }
  bool ReadUntil(const std::string& delimiter, std::string* out, int timeout_ms) {
    size_t found;
    while ((found = buffer_.find(delimiter)) == std::string::npos) {
      if (Fill(timeout_ms) <= 0) return false;
    }
    *out = buffer_.substr(0, found);
    buffer_.erase(0, found + delimiter.size());
    return true;
  }
  bool ReadBytes(size_t n, std::string* out, int timeout_ms) {
    while (buffer_.size() < n) {
      if (Fill(timeout_ms) <= 0) return false;
    }
    *out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_SERVER_HTTP_TEST_CLIENT_H_
