// HttpServer: an asynchronous HTTP/1.1 server on Boost.Beast / Asio for the
// OpenAI-compatible front end. A few threads run one io_context; each
// connection lives on its own strand, so thousands of open streams cost no
// thread each. Keep-alive, request body and header limits (413 / 431),
// read and idle timeouts.
//
// The application sees one HttpExchange per request. It answers with Reply
// (a whole response) or StartStream / Write / Finish (a chunked response,
// e.g. server-sent events), from any thread: each call is posted to the
// connection's strand. While a request is being answered the connection is
// watched, so a client that goes away is noticed (OnClose runs once) even
// if nothing is being written, and the application can abort the work.
// Thread-safety: HttpServer's Start/Stop from one controlling thread;
// HttpExchange methods from any thread.
#ifndef ALIGNSERVE_SERVER_HTTP_SERVER_H_
#define ALIGNSERVE_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace alignserve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: any free port (see HttpServer::port())
  int threads = 2;
  size_t max_body_bytes = size_t{8} << 20;
  size_t max_header_bytes = size_t{16} << 10;
  std::chrono::seconds read_timeout{30};  // a started request must arrive within this
  std::chrono::seconds idle_timeout{75};  // a keep-alive connection may idle this long
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // The value of a header (case-insensitive name), or "" when absent.
  std::string Header(std::string_view name) const;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  // A whole response; Content-Length is set. Ends the exchange.
  virtual void Reply(int status, std::string content_type, std::string body,
                     HttpHeaders headers = {}) = 0;
  // Starts a chunked response (e.g. text/event-stream); then Write pieces
  // and Finish. Writes queue in memory: callers bound what they produce.
  virtual void StartStream(int status, std::string content_type, HttpHeaders headers = {}) = 0;
  virtual void Write(std::string data) = 0;
  virtual void Finish() = 0;
  // Runs once, on the connection's strand, if the client goes away before
  // the exchange ends. Set it before the work it should cancel can finish.
  virtual void OnClose(std::function<void()> callback) = 0;
  // Headers added to whatever response this exchange ends with (e.g. the
  // CORS headers decided from the request); call before Reply/StartStream.
  virtual void AddResponseHeaders(HttpHeaders headers) = 0;
  // Runs `task` on the connection's strand, after what was posted before:
  // where the application drains engine streams without locks.
  virtual void Run(std::function<void()> task) = 0;
  virtual bool closed() const = 0;
};

// Called on a connection's strand for every complete request; must not
// block (hand long work to the engine and answer later).
using HttpHandler =
    std::function<void(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange)>;

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads. Unavailable naming host:port if
  // the address cannot be bound.
  absl::Status Start();
  // The bound port (useful with port 0).
  uint16_t port() const { return bound_port_; }
  // Stops accepting new connections; open ones continue.
  void StopAccepting();
  // Closes everything and joins the threads.
  void Stop();
  int64_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t bound_port_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_HTTP_SERVER_H_
