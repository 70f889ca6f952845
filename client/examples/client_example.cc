// A minimal online service: tags a few users, reads them back, counts an
// audience, both with the sync calls and with an async call.
//
//   tagcache_client_example [host:port]     (default 127.0.0.1:7379)
//
// Exits 0 when every answer is what the writes imply, 1 otherwise.
#include <tagcache/client/client.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>

namespace {

int Fail(const char* what, const tagcache::Status& status) {
  std::fprintf(stderr, "example: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using tagcache::client::Event;
  using tagcache::client::TagOp;

  tagcache::ClientOptions options;
  if (argc > 1) options.seeds = {argv[1]};
  options.client_name = "tagcache-client-example";
  auto connected = tagcache::Client::Connect(options);
  if (!connected.ok()) return Fail("connect", connected.status());
  tagcache::Client& client = **connected;

  const uint64_t now =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  // Users 1001..1003 like apples; 1002 also churned.
  std::vector<Event> events = {
      {1001, "example_apple_fan", TagOp::kSet, now},
      {1002, "example_apple_fan", TagOp::kSet, now},
      {1003, "example_apple_fan", TagOp::kSet, now},
      {1002, "example_churned", TagOp::kSet, now},
  };
  auto applied = client.ApplyEvents(events);
  if (!applied.ok()) return Fail("apply events", applied.status());

  auto tags = client.GetTags(1002);
  if (!tags.ok()) return Fail("get tags", tags.status());
  std::printf("user 1002 has %zu tags:", tags->size());
  for (const auto& hit : *tags) std::printf(" %s", hit.tag.c_str());
  std::printf("\n");

  auto count = client.Count("example_apple_fan & !example_churned");
  if (!count.ok()) return Fail("count", count.status());
  std::printf("example_apple_fan & !example_churned: %llu users\n",
              static_cast<unsigned long long>(*count));

  // The async form: the callback runs on the client's I/O thread.
  std::promise<tagcache::Result<uint64_t>> answer;
  client.CountAsync("example_apple_fan", [&answer](tagcache::Result<uint64_t> result) {
    answer.set_value(std::move(result));
  });
  auto async_count = answer.get_future().get();
  if (!async_count.ok()) return Fail("async count", async_count.status());

  const bool as_expected = tags->size() == 2 && *count == 2 && *async_count == 3;
  std::printf("%s\n", as_expected ? "ok" : "unexpected answers");
  return as_expected ? 0 : 1;
}
