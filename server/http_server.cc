#include "server/http_server.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace alignserve {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::string ErrorJson(const std::string& message, const std::string& type) {
  // Plain formatting: the messages here are fixed strings without quotes.
  return absl::StrCat(R"({"error":{"message":")", message, R"(","type":")", type,
                      R"(","param":null,"code":null}})");
}

class Exchange;

// One connection: reads requests one at a time, hands each to the handler
// as an exchange, writes its answer, and keeps the connection alive when
// both sides want that. Everything runs on the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler,
          std::atomic<int64_t>& open)
      : stream_(std::move(socket)), options_(options), handler_(handler), open_(open) {
    ++open_;
  }
  ~Session() { --open_; }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadRequest(); });
  }

  // --- called on the strand by the exchange ---
  void Reply(int status, std::string content_type, std::string body, HttpHeaders headers);
  void StartStream(int status, std::string content_type, HttpHeaders headers);
  void Write(std::string data);
  void Finish();
  void AddResponseHeaders(HttpHeaders headers) {
    extra_headers_.insert(extra_headers_.end(), headers.begin(), headers.end());
  }
  void SetOnClose(std::function<void()> callback) {
    if (client_gone_) {
      if (callback) callback();
      return;
    }
    on_close_ = std::move(callback);
  }
  bool client_gone() const { return client_gone_; }
  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  void ReadRequest();
  void OnRead(beast::error_code ec, size_t bytes);
  void WatchClient();
  void ClientGone();
  void Flush();
  void EndExchange();
  void Close();

  beast::tcp_stream stream_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  std::atomic<int64_t>& open_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  bool in_exchange_ = false;
  bool streaming_ = false;
  bool finishing_ = false;  // the last piece of the exchange is queued
  bool writing_ = false;
  bool watching_ = false;
  bool read_after_watch_ = false;
  bool client_gone_ = false;
  std::deque<std::string> out_;
  char watch_byte_ = 0;
  std::function<void()> on_close_;
  std::weak_ptr<Exchange> current_;
  HttpHeaders extra_headers_;  // for the current exchange's response
};

class Exchange final : public HttpExchange {
 public:
  explicit Exchange(std::shared_ptr<Session> session) : session_(std::move(session)) {}
  void Reply(int status, std::string content_type, std::string body, HttpHeaders headers) override {
    Post([=, body = std::move(body)](Session& s) mutable {
      s.Reply(status, content_type, std::move(body), headers);
    });
  }
  void StartStream(int status, std::string content_type, HttpHeaders headers) override {
    Post([=](Session& s) { s.StartStream(status, content_type, headers); });
  }
  void Write(std::string data) override {
    Post([data = std::move(data)](Session& s) mutable { s.Write(std::move(data)); });
  }
  void Finish() override {
    Post([](Session& s) { s.Finish(); });
  }
  void AddResponseHeaders(HttpHeaders headers) override {
    Post([headers = std::move(headers)](Session& s) mutable {
      s.AddResponseHeaders(std::move(headers));
    });
  }
  void Run(std::function<void()> task) override {
    Post([task = std::move(task)](Session&) { task(); });
  }
  void OnClose(std::function<void()> callback) override {
    Post([callback = std::move(callback)](Session& s) mutable {
      s.SetOnClose(std::move(callback));
    });
  }
  bool closed() const override { return closed_.load(); }
  void MarkClosed() { closed_.store(true); }

 private:
  template <typename F>
  void Post(F f) {
    net::post(session_->executor(), [s = session_, f = std::move(f)]() mutable { f(*s); });
  }
  std::shared_ptr<Session> session_;
  std::atomic<bool> closed_{false};
};

void Session::ReadRequest() {
  parser_.emplace();
  parser_->body_limit(options_.max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(options_.max_header_bytes));
  // An idle keep-alive connection and a slow request share one deadline.
  stream_.expires_after(options_.idle_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&Session::OnRead, shared_from_this()));
}

void Session::OnRead(beast::error_code ec, size_t) {
  if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout ||
      ec == net::error::connection_reset) {
    return Close();
  }
  if (ec) {
    // The request cannot be parsed to its end: answer, then close (the
    // stream cannot be resynchronized).
    keep_alive_ = false;
    in_exchange_ = true;
    if (ec == http::error::body_limit) {
      return Reply(413, "application/json",
                   ErrorJson("request body over the server's size limit", "invalid_request_error"),
                   {});
    }
    if (ec == http::error::header_limit) {
      return Reply(
          431, "application/json",
          ErrorJson("request headers over the server's size limit", "invalid_request_error"), {});
    }
    return Reply(400, "application/json",
                 ErrorJson("malformed HTTP request", "invalid_request_error"), {});
  }
  http::request<http::string_body> req = parser_->release();
  keep_alive_ = req.keep_alive();
  HttpRequest request;
  request.method = std::string(req.method_string());
  request.target = std::string(req.target());
  for (const auto& field : req) {
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(req.body());
  in_exchange_ = true;
  streaming_ = finishing_ = false;
  stream_.expires_never();  // generation may take long; the watch notices a gone client
  auto exchange = std::make_shared<Exchange>(shared_from_this());
  current_ = exchange;
  WatchClient();
  handler_(request, exchange);
}

// One pending 1-byte read while an exchange is open: EOF or an error means
// the client went away. Bytes that do arrive (a pipelined request) stay in
// buffer_ for the next read.
void Session::WatchClient() {
  if (watching_ || client_gone_) return;
  watching_ = true;
  stream_.socket().async_read_some(net::buffer(&watch_byte_, 1),
                                   [self = shared_from_this()](beast::error_code ec, size_t n) {
                                     self->watching_ = false;
                                     if (!ec && n == 1) {
                                       auto b = self->buffer_.prepare(1);
                                       *static_cast<char*>(b.data()) = self->watch_byte_;
                                       self->buffer_.commit(1);
                                     } else if (ec != net::error::operation_aborted) {
                                       self->ClientGone();
                                       return;
                                     }
                                     if (self->read_after_watch_) {
                                       self->read_after_watch_ = false;
                                       self->ReadRequest();
                                     }
                                   });
}

void Session::ClientGone() {
  if (client_gone_) return;
  client_gone_ = true;
  // A write may be in flight (its completion not yet run): its buffer, the
  // front of out_, must live until that handler drops it.
  if (!writing_) out_.clear();
  if (auto exchange = current_.lock()) exchange->MarkClosed();
  if (auto callback = std::move(on_close_)) callback();
  on_close_ = nullptr;
  Close();
}

void Session::Reply(int status, std::string content_type, std::string body, HttpHeaders headers) {
  if (!in_exchange_ || streaming_ || finishing_ || client_gone_) return;
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "alignserve");
  for (auto& [name, value] : extra_headers_) res.set(name, value);
  res.set(http::field::content_type, content_type);
  for (auto& [name, value] : headers) res.set(name, value);
  res.keep_alive(keep_alive_);
  res.body() = std::move(body);
  res.prepare_payload();
  std::ostringstream serialized;
  serialized << res;
  out_.push_back(serialized.str());
  finishing_ = true;
  Flush();
}

void Session::StartStream(int status, std::string content_type, HttpHeaders headers) {
  if (!in_exchange_ || streaming_ || finishing_ || client_gone_) return;
  streaming_ = true;
  std::string head =
      absl::StrCat("HTTP/1.1 ", status, " ",
                   std::string(http::obsolete_reason(static_cast<http::status>(status))),
                   "\r\nServer: alignserve\r\nContent-Type: ", content_type,
                   "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
  for (auto& [name, value] : extra_headers_) absl::StrAppend(&head, name, ": ", value, "\r\n");
  for (auto& [name, value] : headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  absl::StrAppend(&head, keep_alive_ ? "" : "Connection: close\r\n", "\r\n");
  out_.push_back(std::move(head));
  Flush();
}

void Session::Write(std::string data) {
  if (!streaming_ || finishing_ || client_gone_ || data.empty()) return;
  out_.push_back(absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n"));
  Flush();
}

void Session::Finish() {
  if (!streaming_ || finishing_ || client_gone_) return;
  out_.push_back("0\r\n\r\n");
  finishing_ = true;
  Flush();
}

void Session::Flush() {
  if (writing_ || out_.empty() || client_gone_) return;
  writing_ = true;
  net::async_write(stream_.socket(), net::buffer(out_.front()),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->writing_ = false;
                     if (ec || self->client_gone_) {
                       self->out_.clear();
                       return self->ClientGone();
                     }
                     self->out_.pop_front();
                     if (!self->out_.empty()) return self->Flush();
                     if (self->finishing_) self->EndExchange();
                   });
}

void Session::EndExchange() {
  in_exchange_ = streaming_ = finishing_ = false;
  extra_headers_.clear();
  on_close_ = nullptr;
  if (!keep_alive_) return Close();
  if (watching_) {
    // The watch read must end before the next request is read.
    read_after_watch_ = true;
    beast::error_code ignored;
    stream_.socket().cancel(ignored);
    return;
  }
  ReadRequest();
}

void Session::Close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
}

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, std::string(name))) return value;
  }
  return "";
}

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o, HttpHandler h)
      : options(std::move(o)), handler(std::move(h)), acceptor(net::make_strand(ioc)) {}

  void Accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        return Accept();  // e.g. out of descriptors for a moment
      }
      std::make_shared<Session>(std::move(s), options, handler, open)->Start();
      Accept();
    });
  }

  HttpServerOptions options;
  HttpHandler handler;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<int64_t> open{0};
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start() {
  Impl& s = *impl_;
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(s.options.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host '", s.options.host, "' is not an IP address: ", ec.message()));
  }
  const tcp::endpoint endpoint{address, s.options.port};
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", s.options.host, ":",
                                               s.options.port, ": ", ec.message(),
                                               " (is another server using the port? try --port)"));
  }
  bound_port_ = s.acceptor.local_endpoint().port();
  s.work.emplace(s.ioc.get_executor());
  s.Accept();
  for (int i = 0; i < std::max(1, s.options.threads); ++i) {
    s.threads.emplace_back([&s] { s.ioc.run(); });
  }
  return absl::OkStatus();
}

void HttpServer::StopAccepting() {
  net::post(impl_->acceptor.get_executor(), [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  });
}

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  s.work.reset();
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

int64_t HttpServer::open_connections() const { return impl_->open.load(); }

}  // namespace alignserve
