// HttpServer (Boost.Beast) on loopback with a raw socket client: keep-alive,
// chunked streaming from another thread, the size limits (413 / 431 / 400),
// a client that goes away mid-exchange, and many concurrent streams on two
// server threads.
#include "server/http_server.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/http_test_client.h"

namespace alignserve {
namespace {

using testing::HttpResponse;
using testing::HttpTestClient;

// Streams "part-0".."part-{n-1}" from a worker thread, 5 ms apart.
void StreamFromThread(std::shared_ptr<HttpExchange> exchange, int n) {
  std::thread([exchange, n] {
    exchange->StartStream(200, "text/event-stream");
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      exchange->Write("part-" + std::to_string(i) + ";");
    }
    exchange->Finish();
  }).detach();
}

struct TestServer {
  std::atomic<int> closes{0};
  std::unique_ptr<HttpServer> server;

  explicit TestServer(HttpServerOptions options = {}) {
    options.port = 0;
    server = std::make_unique<HttpServer>(options, [this](const HttpRequest& request,
                                                          std::shared_ptr<HttpExchange> exchange) {
      if (request.target == "/echo") {
        exchange->Reply(200, "text/plain", request.method + " " + request.body,
                        {{"X-Header-Seen", request.Header("x-test")}});
      } else if (request.target.rfind("/stream/", 0) == 0) {
        StreamFromThread(exchange, std::stoi(request.target.substr(8)));
      } else if (request.target == "/hang") {
        exchange->OnClose([this] { ++closes; });  // never answered
      } else {
        exchange->Reply(404, "text/plain", "no route");
      }
    });
    REQUIRE(server->Start().ok());
  }
};

TEST_CASE("requests on one keep-alive connection get their own answers") {
  TestServer t;
  HttpTestClient c(t.server->port());
  REQUIRE(c.connected());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.Request("POST", "/echo", "body" + std::to_string(i), "X-Test: yes\r\n"));
    const HttpResponse r = c.Read();
    CHECK(r.status == 200);
    CHECK(r.body == "POST body" + std::to_string(i));
    CHECK(r.headers.at("x-header-seen") == "yes");
  }
  REQUIRE(c.Request("GET", "/nowhere", ""));
  CHECK(c.Read().status == 404);
}

TEST_CASE("a chunked stream written from another thread arrives whole and in order") {
  TestServer t;
  HttpTestClient c(t.server->port());
  REQUIRE(c.Request("GET", "/stream/20", ""));
  const HttpResponse r = c.Read();
  CHECK(r.status == 200);
  CHECK(r.headers.at("content-type") == "text/event-stream");
  std::string expected;
  for (int i = 0; i < 20; ++i) expected += "part-" + std::to_string(i) + ";";
  CHECK(r.body == expected);
  CHECK(r.chunks.size() == 20);
  // The connection stays usable after the stream.
  REQUIRE(c.Request("POST", "/echo", "after"));
  CHECK(c.Read().body == "POST after");
}

TEST_CASE("oversized bodies, oversized headers and malformed requests are refused") {
  HttpServerOptions options;
  options.max_body_bytes = 1000;
  options.max_header_bytes = 2000;
  TestServer t(options);
  {
    HttpTestClient c(t.server->port());
    REQUIRE(c.Request("POST", "/echo", std::string(5000, 'x')));
    const HttpResponse r = c.Read();
    CHECK(r.status == 413);
    CHECK(r.body.find("\"error\"") != std::string::npos);
  }
  {
    HttpTestClient c(t.server->port());
    REQUIRE(c.Request("POST", "/echo", "{}", "X-Big: " + std::string(5000, 'y') + "\r\n"));
    CHECK(c.Read().status == 431);
  }
  {
    HttpTestClient c(t.server->port());
    REQUIRE(c.Send("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
    CHECK(c.Read().status == 400);
  }
  // The server still answers.
  HttpTestClient c(t.server->port());
  REQUIRE(c.Request("POST", "/echo", "fine"));
  CHECK(c.Read().body == "POST fine");
}

TEST_CASE("a client that goes away mid-exchange is noticed without any write") {
  TestServer t;
  {
    HttpTestClient c(t.server->port());
    REQUIRE(c.Request("GET", "/hang", ""));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }  // closed here
  for (int i = 0; i < 100 && t.closes.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(t.closes.load() == 1);
}

TEST_CASE("three hundred concurrent streams on two server threads all complete") {
  TestServer t;
  constexpr int kClients = 300;
  std::vector<std::unique_ptr<HttpTestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<HttpTestClient>(t.server->port()));
    REQUIRE(clients.back()->connected());
    REQUIRE(clients.back()->Request("GET", "/stream/10", ""));
  }
  int complete = 0;
  for (auto& c : clients) {
    const HttpResponse r = c->Read();
    if (r.status == 200 && r.chunks.size() == 10) ++complete;
  }
  CHECK(complete == kClients);
}

// A client that reads its reply and closes at once races the server's write
// completion against its end-of-stream watch; hundreds of such clients in a
// row must all get their answer and leave the server up.
TEST_CASE("clients that close right after their reply never take the server down") {
  TestServer t;
  int answered = 0;
  for (int i = 0; i < 300; ++i) {
    HttpTestClient c(t.server->port());
    REQUIRE(c.connected());
    REQUIRE(c.Request("POST", "/echo", "x"));
    if (c.Read().status == 200) ++answered;
  }
  CHECK(answered == 300);
}

}  // namespace
}  // namespace alignserve
